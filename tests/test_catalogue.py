"""The recipe catalogue's steps on hand-made corpora: near dedup, model-based selection, mixtures."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from proxyscale import config as C
from proxyscale.data import curation, mixtures
from proxyscale.data.sources import Document

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon".split()


def _text(seed: int, n: int = 300) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(n))


def test_near_dedup_drops_near_copies_and_keeps_distinct_documents():
    a = _text(1)
    words = a.split()
    b = " ".join(words[:10] + ["CHANGED"] + words[11:])  # one word edited
    c = _text(2)
    kept = curation.near_dedup([Document("a", a), Document("b", b), Document("c", c)], random.Random(0))
    assert [d.id for d in kept] == ["a", "c"]


def test_select_like_prefers_documents_like_the_target(corpora, cache_dir):
    prose = [Document(f"p{i}", "The function returns the value of the argument and raises an error when the input is invalid. " * 10) for i in range(4)]
    junk = [Document(f"j{i}", _text(i)) for i in range(4)]
    kept = curation.select_like(junk + prose, random.Random(0), target="python_docs", keep_frac=0.5, cache_dir=str(cache_dir))
    assert {d.id for d in kept} == {d.id for d in prose}


def test_dirichlet_mixtures_are_seeded_and_sum_to_one():
    a = mixtures.dirichlet(16, 3, alpha=1.0, seed=7)
    b = mixtures.dirichlet(16, 3, alpha=1.0, seed=7)
    assert a.shape == (16, 3) and np.allclose(a.sum(axis=1), 1) and (a >= 0).all()
    assert np.array_equal(a, b) and not np.array_equal(a, mixtures.dirichlet(16, 3, alpha=1.0, seed=8))
    assert mixtures.dirichlet(4, 3, 0.3, 0, min_weight=0.05).min() >= 0.05 - 1e-9
    with pytest.raises(C.ConfigError):
        mixtures.dirichlet(4, 1)


def test_written_mixture_recipes_compose_with_their_weights(tmp_path):
    paths = mixtures.write_recipes("balanced", 3, 1.0, 0, out_dir=tmp_path / "data" / "mix")
    assert len(paths) == 3
    with initialize_config_dir(config_dir=C.CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra.searchpath=[file://{tmp_path}]", "data=mix/balanced_mix001"])
    weights = [s.weight for s in cfg.data.sources]
    assert cfg.data.name == "balanced_mix001" and abs(sum(weights) - 1) < 1e-3
    assert weights == [round(float(w), 4) for w in mixtures.dirichlet(3, 3, 1.0, 0)[1]]
    assert [s.op for s in cfg.data.steps] == ["exact_dedup", "quality_filter"]
