"""Curation steps on hand-made corpora, cache reuse, eval/train separation, local-file loading."""

from __future__ import annotations

import json
import logging
import math
import os
import random

import numpy as np
import pytest
from faults import full_disk
from omegaconf import OmegaConf

from proxyscale.config import ConfigError, DataConfig, SourceConfig
from proxyscale.data import cache, curation, ngram, sources
from proxyscale.data import cache as token_cache  # noqa: E402
from proxyscale.data.sources import Document

PROSE = "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun. " * 8


def docs(*texts):
    return [Document(f"d{i}", t) for i, t in enumerate(texts)]


def test_exact_dedup_removes_whitespace_variants_and_nothing_else():
    out = curation.exact_dedup(docs("a b c", "a  b\nc", "a b d", "a b c"), random.Random(0))
    assert [d.text for d in out] == ["a b c", "a b d"]


def test_quality_filter_keeps_prose_drops_junk():
    junk_symbols = "{}[]<>|=*_#" * 60
    repeated = "same line here\n" * 60
    short = "too short"
    kept = curation.quality_filter(docs(PROSE, junk_symbols, repeated, short), random.Random(0))
    assert [d.text for d in kept] == [PROSE]


def test_duplicate_and_corrupt_are_seeded_and_do_what_they_say():
    base = docs(*(f"{PROSE} {i}" for i in range(10)))
    dup = curation.duplicate(base, random.Random(0), factor=8)
    assert len(dup) == 80 and len({d.text for d in dup}) == 10
    a = curation.corrupt(base, random.Random(1), frac=1.0, rate=0.3)
    b = curation.corrupt(base, random.Random(1), frac=1.0, rate=0.3)
    assert [d.text for d in a] == [d.text for d in b]
    changed = np.mean([x != y for d, e in zip(base, a) for x, y in zip(d.text, e.text)])
    assert 0.2 < changed < 0.35


def _recipe(**kw) -> DataConfig:
    node = OmegaConf.merge(
        OmegaConf.structured(DataConfig),
        OmegaConf.create(
            {
                "name": "t",
                "pool_tokens": 50_000,
                "sources": [{"name": "prose", "path": "python_docs", "weight": 1.0}, {"name": "code", "path": "python_code", "weight": 1.0}],
                "steps": [{"op": "exact_dedup"}],
            }
        ),
        OmegaConf.create(kw),
    )
    return node


def test_recipe_cache_is_built_once_and_reused(fresh_cache):
    a, meta_a = cache.recipe_tokens(_recipe(), str(fresh_cache))
    files = sorted((fresh_cache / "recipes").glob("*.bin"))
    mtime = files[0].stat().st_mtime_ns
    b, meta_b = cache.recipe_tokens(_recipe(name="renamed", description="same tokens"), str(fresh_cache))
    assert meta_a["key"] == meta_b["key"] and files[0].stat().st_mtime_ns == mtime
    assert len(a) == 50_000 and np.array_equal(np.asarray(a), np.asarray(b))
    assert {s["source"]: s["tokens"] for s in meta_a["sources"]} == {"prose": 25_000, "code": 25_000}
    c, meta_c = cache.recipe_tokens(_recipe(seed=1), str(fresh_cache))
    assert meta_c["key"] != meta_a["key"]


BUILD = """
import logging, sys
from omegaconf import OmegaConf
from proxyscale.config import DataConfig
from proxyscale.data import cache
logging.basicConfig(level=logging.INFO, format="%(message)s")
recipe = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.create({"name": "t", "pool_tokens": 50_000, "steps": [{"op": "exact_dedup"}],
    "sources": [{"name": "prose", "path": "python_docs"}, {"name": "code", "path": "python_code"}]}))
tokens, meta = cache.recipe_tokens(recipe, sys.argv[1])
print("tokens", len(tokens), meta["sha256"])
"""


def test_processes_that_meet_a_cold_cache_build_it_once(fresh_cache):
    """The ranks of a multi-process cell under srun all load the data: one builds each token cache (under its file
    lock), the others wait for the lock and read what it built."""
    import os
    import subprocess
    import sys

    from helpers import ROOT

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-c", BUILD, str(fresh_cache)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    said = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), said
    assert sum(s.count("building token cache") for s in said) == 1, said
    assert len({s.strip().splitlines()[-1] for s in said}) == 1 and said[0].strip().splitlines()[-1].startswith("tokens 50000 "), said


def test_no_eval_document_is_in_any_training_side(corpora):
    train_groups, held_groups, train_texts, held_texts = set(), set(), set(), set()
    for name in sources.BUILTIN:
        src = OmegaConf.structured(SourceConfig(name=name))
        train, held = (sources.load_documents(src, side, str(corpora.parent)) for side in ("train", "heldout"))
        assert train and held, name
        train_groups |= {d.group for d in train}
        held_groups |= {d.group for d in held}
        train_texts |= {d.text for d in train}
        held_texts |= {d.text for d in held}
    # a held-out module's docstrings (prose eval) never sit in a training code file, and vice versa
    assert not (train_groups & held_groups)
    assert not (train_texts & held_texts)


def test_duplicated_pool_holds_one_eighth_unique_text(fresh_cache):
    dup = _recipe(pool_tokens=400_000, steps=[{"op": "exact_dedup"}, {"op": "duplicate", "factor": 8}])
    tokens, meta = cache.recipe_tokens(dup, str(fresh_cache))
    for s in meta["sources"]:
        assert s["unique_tokens"] < s["tokens"] / 4, s  # 1/8 plus at most one whole document


def test_eval_tokens_are_slices_of_every_heldout_document(fresh_cache):
    src = OmegaConf.structured(SourceConfig(name="prose", path="python_docs"))
    ids, meta = cache.eval_tokens(src, "byte", 8192, str(fresh_cache))
    held = sources.load_documents(src, "heldout", str(fresh_cache))
    assert len(ids) == 8192 and meta["docs_used"] == meta["docs"] == len(held)
    first = sorted(held, key=lambda d: d.id)[0]
    assert bytes(np.asarray(ids[:100], dtype=np.uint8)) == first.text.encode()[:100]


def test_too_few_tokens_without_repeat_is_a_one_line_error(fresh_cache):
    with pytest.raises(ConfigError, match="set data.repeat=true"):
        cache.recipe_tokens(_recipe(pool_tokens=50_000_000, repeat=False), str(fresh_cache))


def test_filter_that_keeps_nothing_is_an_error(fresh_cache):
    r = _recipe(steps=[{"op": "quality_filter", "min_chars": 10_000_000}])
    with pytest.raises(ConfigError, match="kept zero documents"):
        cache.recipe_tokens(r, str(fresh_cache))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "text"])
def test_local_files_load_through_datasets(tmp_path, fmt):
    rows = [{"text": f"{PROSE} document {i}", "id": i} for i in range(5)]
    if fmt == "jsonl":
        path = tmp_path / "c.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows))
    elif fmt == "parquet":
        import pandas as pd

        path = tmp_path / "c.parquet"
        pd.DataFrame(rows).to_parquet(path)
    else:
        path = tmp_path / "c.txt"
        path.write_text("\n".join(r["text"] for r in rows))
    src = OmegaConf.structured(SourceConfig(name="local", kind="files", path=str(path)))
    sources.check_source(src)
    got = sources.load_documents(src, "train")
    assert [d.text for d in got] == [r["text"] for r in rows]


def test_local_file_with_wrong_field_names_the_fields(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"body": PROSE}))
    src = OmegaConf.structured(SourceConfig(name="local", kind="files", path=str(path)))
    with pytest.raises(ConfigError, match="no field 'text'.*body"):
        sources.load_documents(src, "train")


def test_unreachable_hub_dataset_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    src = OmegaConf.structured(SourceConfig(name="web", kind="hf", path="HuggingFaceFW/fineweb-edu", config_name="sample-10BT"))
    with pytest.raises(ConfigError) as exc:
        sources.load_documents(src, "train")
    assert "cannot load hub dataset HuggingFaceFW/fineweb-edu/sample-10BT" in str(exc.value) and "\n" not in str(exc.value)


def test_recipes_sharing_a_step_prefix_reuse_its_cache(fresh_cache):
    a = _recipe(steps=[{"op": "exact_dedup"}, {"op": "quality_filter", "sources": ["prose"]}])
    cache.recipe_tokens(a, str(fresh_cache))
    prefix_files = {p.name: p.stat().st_mtime_ns for p in (fresh_cache / "steps").glob("*.jsonl")}
    assert len(prefix_files) == 3  # prose: dedup, dedup+filter; code: dedup
    b = _recipe(steps=[{"op": "exact_dedup"}, {"op": "quality_filter", "sources": ["prose"]}, {"op": "corrupt", "frac": 0.5}])
    _, meta = cache.recipe_tokens(b, str(fresh_cache))
    after = {p.name: p.stat().st_mtime_ns for p in (fresh_cache / "steps").glob("*.jsonl")}
    assert {k: after[k] for k in prefix_files} == prefix_files  # shared prefixes were read, not rebuilt
    assert len(after) == 5
    ops = [(s["source"], s["op"]) for s in meta["steps"]]
    assert ops == [("prose", "exact_dedup"), ("prose", "quality_filter"), ("prose", "corrupt"), ("code", "exact_dedup"), ("code", "corrupt")]
    assert all(s["bytes_out"] <= s["bytes_in"] for s in meta["steps"] if s["op"] != "corrupt")


def test_unigram_bigram_by_hand():
    res = ngram.unigram_bigram_loss(np.array([0, 1, 0, 1]), np.array([0, 1]), vocab=2)
    assert res["unigram"] == pytest.approx(math.log(2))
    # p(1|0) = (c(0,1)+1)/(c(0 as context)+V) = (2+1)/(2+2); first token by the unigram (1/2)
    assert res["bigram"] == pytest.approx(-(math.log(0.5) + math.log(0.75)) / 2)


def test_bigram_beats_unigram_on_structured_text():
    rng = np.random.default_rng(0)
    seq = np.tile(np.arange(10), 500)  # perfectly predictable successor
    ev = np.tile(np.arange(10), 20)
    res = ngram.unigram_bigram_loss(seq, ev, vocab=257)
    assert res["unigram"] == pytest.approx(-math.log((500 + 1) / (5000 + 257)))
    assert res["bigram"] < 0.5 < 2.0 < res["unigram"]
    noise = rng.integers(0, 10, 5000)
    assert ngram.unigram_bigram_loss(noise, ev, 257)["bigram"] > res["bigram"]


def test_sparse_bigram_counts_match_dense_ones_and_are_cached(tmp_path):
    """Bigram counts are sparse (a 50k vocabulary would need V^2 dense counts); the losses equal a dense
    count by hand, and a second call reads the cache keyed by the pool and eval keys."""
    rng = np.random.default_rng(1)
    train, ev, vocab = rng.integers(0, 40, 3000), rng.integers(0, 40, 400), 50_304
    dense = np.zeros((40, 40))
    np.add.at(dense, (train[:-1], train[1:]), 1)
    uni = np.bincount(train, minlength=vocab)
    lp_uni = np.log(uni + 1) - np.log(len(train) + vocab)
    lp_big = np.log(dense[ev[:-1], ev[1:]] + 1) - np.log(dense.sum(1)[ev[:-1]] + vocab)
    want = -(lp_uni[ev[0]] + lp_big.sum()) / len(ev)
    got = ngram.baselines(train, "pool1", {"set": ev}, {"set": "ev1"}, vocab, tmp_path)
    assert got["set"]["bigram"] == pytest.approx(want, rel=1e-12)
    cached = tmp_path / "baselines" / "pool1-ev1.json"
    assert json.loads(cached.read_text())["bigram"] == got["set"]["bigram"]
    assert ngram.baselines(train[:10], "pool1", {"set": ev}, {"set": "ev1"}, vocab, tmp_path) == got  # the cache answers


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "text"])
def test_local_files_read_directly_give_the_documents_datasets_gives(tmp_path, fmt):
    """Your own files need no `datasets`: the direct reader yields the same documents, ids and order as
    datasets' json/parquet/text builders did, across a glob of two files and with max_docs."""
    datasets = pytest.importorskip("datasets")
    for k in range(2):
        rows = [{"text": f"{PROSE} file {k} doc {i}" if i != 2 else ""} for i in range(4)]
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"c{k}.parquet")
        else:
            body = [json.dumps(r) for r in rows] if fmt == "jsonl" else [r["text"] for r in rows]
            (tmp_path / f"c{k}.{'jsonl' if fmt == 'jsonl' else 'txt'}").write_text("\n".join(body) + "\n")
    path = str(tmp_path / ("c*.parquet" if fmt == "parquet" else "c*.jsonl" if fmt == "jsonl" else "c*.txt"))
    src = OmegaConf.structured(SourceConfig(name="local", kind="files", path=path, max_docs=7))
    got = [(d.id, d.text) for d in sources.load_documents(src, "train")]
    files = sorted(str(p) for p in tmp_path.glob(path.rsplit("/", 1)[1]))
    ds = datasets.load_dataset({"jsonl": "json"}.get(fmt, fmt), data_files={"train": files}, split="train", streaming=True)
    want = [(f"local:{i}", r["text"]) for i, r in enumerate(ds) if i < 7 and r["text"].strip()]
    assert got == want and len(got) == 5  # rows 0-6 of 8, less the two empty ones


def test_a_local_files_recipe_is_identified_by_its_files_content(tmp_path):
    """Editing a local file changes the recipe's cache key and its cells' run ids; built-in recipes carry no such key."""
    from proxyscale.data import identity

    f = tmp_path / "notes.jsonl"
    f.write_text(json.dumps({"text": PROSE}) + "\n")
    recipe = DataConfig(name="mine", pool_tokens=2000, sources=[SourceConfig(name="notes", kind="files", path=str(f))])
    config = {"data": OmegaConf.to_container(OmegaConf.structured(recipe))}
    key1, env1 = cache._recipe_payload(OmegaConf.structured(recipe)), identity.environment(config)
    f.write_text(json.dumps({"text": PROSE + " edited"}) + "\n")
    key2, env2 = cache._recipe_payload(OmegaConf.structured(recipe)), identity.environment(config)
    assert key1["files"] != key2["files"] and env1["files"] != env2["files"]
    assert "files" not in cache._recipe_payload(_recipe()) and "files" not in identity.environment({"data": {"sources": [{"name": "p"}]}})


def _edit_in_place(path, old: str, new: str):
    """Same size, same mtime: only the bytes differ."""
    st = path.stat()
    text = path.read_text()
    assert len(old) == len(new) and old in text
    path.write_text(text.replace(old, new))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_local_data_file_edited_in_place_is_another_run_id_and_cache(tmp_path, out_dir):
    from omegaconf import OmegaConf

    from proxyscale import grid
    from proxyscale.config import SourceConfig
    from proxyscale.data import cache

    text = "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun. " * 40
    ev, tr = tmp_path / "eval.jsonl", tmp_path / "train.jsonl"
    ev.write_text("\n".join(json.dumps({"text": f"held out {i}: {text}"}) for i in range(20)))
    tr.write_text("\n".join(json.dumps({"text": f"{text} train {i}"}) for i in range(20)))
    args = [
        "-m",
        "model=debug",
        f"eval.sets=[{{name: e, kind: files, path: '{ev}'}}]",
        f"data.sources.0={{name: prose, kind: files, path: '{tr}', weight: 1.0}}",
        f"paths.output_dir={out_dir}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    ids = lambda: grid.compose_grid(args)[0][0].run_id  # noqa: E731
    src = OmegaConf.structured(SourceConfig(name="e", kind="files", path=str(ev)))
    first, first_eval = ids(), cache.eval_tokens(src, "byte", 2048, str(tmp_path / "cache"))[1]["key"]
    _edit_in_place(ev, "held out 3:", "HELD OUT 3:")
    second = ids()
    tokens, meta = cache.eval_tokens(src, "byte", 2048, str(tmp_path / "cache"))
    assert second != first, "an edited eval file kept its run id"
    assert meta["key"] != first_eval and b"HELD OUT" in np.asarray(tokens).astype(np.uint8).tobytes(), "the stale eval cache was served"
    _edit_in_place(tr, "train 5", "TRAIN 5")
    assert ids() not in (first, second), "an edited training file kept its run id"
    assert ids() == ids()  # stable while the files stay


def test_a_files_fingerprint_is_hashed_once_per_content(tmp_path, monkeypatch):
    from proxyscale.data import sources

    path = tmp_path / "a.txt"
    path.write_text("some text " * 100)
    src = {"kind": "files", "path": str(path), "name": "a"}
    hashed = []
    real = sources._hash_file
    monkeypatch.setattr(sources, "_hash_file", lambda *a: hashed.append(a) or real(*a))
    fp = sources.files_fingerprint(src, str(tmp_path / "c"))
    assert sources.files_fingerprint(src, str(tmp_path / "c")) == fp and len(hashed) == 1
    monkeypatch.setattr(sources, "_DIGESTS", {})  # a new process: the memo in the cache folder serves it
    assert sources.files_fingerprint(src, str(tmp_path / "c")) == fp and len(hashed) == 1
    path.write_text("other text " * 100)
    assert sources.files_fingerprint(src, str(tmp_path / "c")) != fp and len(hashed) == 2


def test_a_task_file_with_a_byte_order_mark_is_read(tmp_path):
    from omegaconf import OmegaConf

    from proxyscale.config import SourceConfig
    from proxyscale.data import sources

    path = tmp_path / "t.jsonl"
    path.write_text('{"context": "a", "choices": ["x", "y"], "label": 1}\n', encoding="utf-8-sig")
    src = OmegaConf.structured(SourceConfig(name="t", kind="files", path=str(path), task="mc"))
    sources.check_source(src)
    assert [i.label for i in sources.load_items(src)] == [1]


def _build(n=4000):
    calls = []

    def build():
        calls.append(1)
        return np.arange(n, dtype=np.uint16) % 257, {"what": "test"}

    return build, calls


def _paths(tmp_path):
    (meta,) = (tmp_path / "k").glob("*.json")
    return meta.with_suffix(".bin"), meta


@pytest.mark.parametrize(
    "damage,said",
    [
        ("cut", "bytes, its meta says 4000 tokens"),  # a pool cut to 2.5%
        ("odd", "bytes, its meta says 4000 tokens"),  # a .bin of odd length
        ("meta", "unreadable meta"),  # a meta file that is not JSON
    ],
)
def test_a_damaged_token_cache_is_rebuilt_with_its_path_named(tmp_path, caplog, damage, said):
    build, calls = _build()
    tokens, meta = token_cache._cached(str(tmp_path), "k", {"p": 1}, build)
    assert meta["n_tokens"] == 4000 and len(meta["sha256"]) == 64 and len(calls) == 1
    bin_path, meta_path = _paths(tmp_path)
    if damage == "cut":
        bin_path.write_bytes(bin_path.read_bytes()[:200])
    elif damage == "odd":
        bin_path.write_bytes(bin_path.read_bytes() + b"\0")
    else:
        meta_path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="proxyscale"):
        tokens, meta = token_cache._cached(str(tmp_path), "k", {"p": 1}, build)
    assert len(calls) == 2 and len(tokens) == 4000 and meta["n_tokens"] == 4000
    assert any(said in r.getMessage() and str(tmp_path / "k") in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records), caplog.text


def test_a_cache_with_other_content_is_rebuilt_on_its_first_use_in_a_process(tmp_path, monkeypatch):
    build, calls = _build()
    token_cache._cached(str(tmp_path), "k", {"p": 1}, build)
    bin_path, _ = _paths(tmp_path)
    st = bin_path.stat()
    bin_path.write_bytes(bytes(reversed(bin_path.read_bytes())))  # same length, other tokens
    os.utime(bin_path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with its old mtime
    monkeypatch.setattr(token_cache, "VERIFIED", set())  # a new process (issue 24: not only with paths.verify_caches=true)
    tokens, _ = token_cache._cached(str(tmp_path), "k", {"p": 1}, build)
    assert len(calls) == 2 and (np.asarray(tokens) == np.arange(4000) % 257).all()
    token_cache._cached(str(tmp_path), "k", {"p": 1}, build)
    assert len(calls) == 2  # verified once per process, then only its length
    tokens, _ = token_cache._cached(str(tmp_path), "k", {"p": 1}, build, verify=True)
    assert len(calls) == 2


def test_a_cache_build_on_a_full_disk_raises_and_leaves_no_litter(tmp_path):
    build, _ = _build(200_000)
    with full_disk(tmp_path / "c"):
        with pytest.raises(OSError, match=f"cannot write cache file {tmp_path / 'c' / 'k'}/.*No space left.*set paths.cache_dir"):
            token_cache._cached(str(tmp_path / "c"), "k", {"p": 1}, build)
        assert sorted(p.name for p in (tmp_path / "c" / "k").iterdir() if not p.name.endswith(".lock")) == []


def test_the_built_in_corpora_leave_proxyscale_itself_out():
    """Its README is this project's page, edited with every commit under one version: inside package_readmes it would
    change the corpus (and every readme cell's result) behind an unchanged fingerprint and run id."""
    names = {d.metadata["Name"].lower() for d in sources._distributions()}
    assert "proxyscale" not in names and len(names) > 20
    assert not any(d.group == "pkg:proxyscale" for d in sources.package_readmes())
