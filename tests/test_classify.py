"""Classifier selection: a hashed n-gram logistic regression trained on positives keeps the pool's most similar text;
what the classifier is (the positives' hash) enters the recipe's cache key and the run id."""

from __future__ import annotations

import random

import pytest

from proxyscale import grid
from proxyscale.config import ConfigError
from proxyscale.data import classify
from proxyscale.data.sources import Document

CATS = "the cat purrs and sleeps on the warm mat while the kitten plays with yarn"
SHIPS = "the ship sails across the cold sea while the crew hauls the heavy anchor"


def _variants(base: str, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = base.split()
    return [" ".join(rng.sample(words, len(words))) + f" {i}" for i in range(n)]


def test_the_classifier_keeps_the_pool_text_like_its_positives(tmp_path):
    pos = tmp_path / "pos.txt"
    pos.write_text("\n".join(_variants(CATS, 30, 1)))
    pool = [Document(f"c{i}", t) for i, t in enumerate(_variants(CATS, 20, 2))] + [Document(f"s{i}", t) for i, t in enumerate(_variants(SHIPS, 20, 3))]
    random.Random(0).shuffle(pool)
    kept = classify.classifier_filter(pool, random.Random(0), positives=str(pos), keep_frac=0.5)
    assert len(kept) == 20 and all(d.id.startswith("c") for d in kept)
    assert [d.id for d in kept] == [d.id for d in pool if d.id.startswith("c")]  # input order kept


def test_the_positives_hash_enters_the_run_id_and_bad_positives_are_refused(tmp_path):
    pos = tmp_path / "pos.jsonl"
    pos.write_text('{"text": "a cat"}\n{"text": "a kitten"}\n')
    base = ["model=debug", "debug=fast", "data=classified"]
    (a,), _ = grid.compose_grid([*base, f"data.steps.2.positives={pos}"])
    pos.write_text('{"text": "a cat"}\n{"text": "a dog"}\n')
    (b,), _ = grid.compose_grid([*base, f"data.steps.2.positives={pos}"])
    assert a.run_id != b.run_id
    with pytest.raises(ConfigError, match="line 1 is not a JSON object"):
        pos.write_text("not json\n")
        classify.positive_texts(str(pos))
    with pytest.raises(grid.GridError, match="neither a built-in corpus"):
        grid.compose_grid([*base, "data.steps.2.positives=/nonexistent.txt"])


def test_built_in_positives_are_read_from_the_extracted_corpora_not_extracted_again(corpora, cache_dir, tmp_path, monkeypatch):
    """Composing a `classified` cell used to re-extract its positives' corpus in every process (about 3 CPU s): with the
    cache folder it reads the corpora extracted there, to the same identity, so run ids stay. A cache folder without
    them is left as it is (composing writes nothing)."""
    from proxyscale.data import sources

    cached = dict(classify.classifier_identity("python_docs", cache_dir=str(cache_dir)))
    asked = []
    with monkeypatch.context() as m:  # a folder without the corpora: not extracted into it (read where they are)
        m.setattr(classify, "_builtin_sha256", lambda name, where: asked.append(where) or "x")
        classify.classifier_identity("python_docs", cache_dir=str(tmp_path))
    assert asked == [None] and not list(tmp_path.iterdir())
    monkeypatch.setitem(sources.BUILTIN, "python_docs", lambda: pytest.fail("python_docs extracted again"))
    classify._builtin_sha256.cache_clear()
    sources.builtin_corpus.cache_clear()
    assert classify.classifier_identity("python_docs", cache_dir=str(cache_dir)) == cached
    (cell,), _ = grid.compose_grid(["model=debug", "data=classified", f"paths.cache_dir={cache_dir}"])
    assert cell.run_id.startswith("debug-classified-")
    with pytest.raises(grid.GridError, match=r"unknown parameter\(s\) \['cache_dir'\]"):  # given by proxyscale, never set in a recipe
        grid.compose_grid(["model=debug", "data=classified", "+data.steps.2.cache_dir=/x"])
