"""Null baselines: unigram and bigram count models of a recipe's training pool, scored on eval tokens.

If a trained proxy ranks recipes no better than counting tokens does, the proxy adds nothing. Both
models use add-one (Laplace) smoothing over the tokenizer's vocabulary:
  unigram p(t)     = (c(t) + 1) / (N + V)
  bigram  p(b | a) = (c(a, b) + 1) / (c(a) + V)   (first eval token scored by the unigram)
Losses are mean negative log-likelihoods in nats/token over the same eval tokens the trainer scores.
The job computes them (its tokens are at hand) and stores them in the record; results are cached
as JSON per (pool cache key, eval cache key) in <cache_dir>/baselines/. Bigram counts are kept
sparse, so a 50k-token vocabulary costs memory in the pool's length, not V^2.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

VERSION = 2


def unigram_bigram_loss(train: np.ndarray, evals: np.ndarray, vocab: int) -> dict[str, float]:
    """Add-one unigram and bigram NLL (nats/token) of `evals` under counts from `train`."""
    train = np.asarray(train, dtype=np.int64)
    evals = np.asarray(evals, dtype=np.int64)
    if len(evals) < 2:
        raise ValueError("need at least 2 eval tokens")
    vocab = int(max(vocab, train.max(initial=0) + 1, evals.max(initial=0) + 1))
    uni = np.bincount(train, minlength=vocab).astype(float)
    logp_uni = np.log(uni + 1.0) - np.log(uni.sum() + vocab)
    pairs, counts = np.unique(train[:-1] * vocab + train[1:], return_counts=True)
    ctx = np.bincount(train[:-1], minlength=vocab).astype(float)
    a, b = evals[:-1], evals[1:]
    code = a * vocab + b
    pos = np.minimum(np.searchsorted(pairs, code), max(len(pairs) - 1, 0))
    seen = np.zeros(len(code)) if not len(pairs) else np.where(pairs[pos] == code, counts[pos], 0).astype(float)
    logp_big = np.log(seen + 1.0) - np.log(ctx[a] + vocab)
    unigram = -float(logp_uni[evals].mean())
    bigram = -float((logp_uni[evals[0]] + logp_big.sum()) / len(evals))
    return {"unigram": unigram, "bigram": bigram}


def baselines(
    pool: np.ndarray, pool_key: str, evals: dict[str, np.ndarray], eval_keys: dict[str, str], vocab: int, cache_dir: str | Path
) -> dict[str, dict[str, float]]:
    """eval set name -> {unigram, bigram} of the pool's count models, cached per (pool key, eval key)."""
    folder = Path(cache_dir) / "baselines"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, ev in evals.items():
        path = folder / f"{pool_key}-{eval_keys[name]}.json"
        try:
            cached = json.loads(path.read_text())
            if cached.get("version") == VERSION:
                out[name] = {"unigram": float(cached["unigram"]), "bigram": float(cached["bigram"])}
                continue
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        out[name] = unigram_bigram_loss(pool, ev, vocab)
        doc = {
            "version": VERSION,
            **out[name],
            "pool_key": pool_key,
            "eval_key": eval_keys[name],
            "train_tokens": int(len(pool)),
            "eval_tokens": int(len(ev)),
            "smoothing": "add-one",
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, path)
    return out
