"""Null baselines: unigram and bigram count models of a recipe's training pool, scored on eval tokens.

If a trained proxy ranks recipes no better than counting bytes does, the proxy adds nothing. Both
models use add-one (Laplace) smoothing over the tokenizer's vocabulary:
  unigram p(t)     = (c(t) + 1) / (N + V)
  bigram  p(b | a) = (c(a, b) + 1) / (c(a) + V)   (first eval token scored by the unigram)
Losses are mean negative log-likelihoods in nats/token over the same eval tokens the trainer scores.
Results are cached as JSON per (recipe cache key, eval cache key) in <cache_dir>/baselines/.
Imports no torch.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

VERSION = 1


def unigram_bigram_loss(train: np.ndarray, evals: np.ndarray, vocab: int) -> dict[str, float]:
    """Add-one unigram and bigram NLL (nats/token) of `evals` under counts from `train`."""
    train = np.asarray(train, dtype=np.int64)
    evals = np.asarray(evals, dtype=np.int64)
    if len(evals) < 2:
        raise ValueError("need at least 2 eval tokens")
    vocab = int(max(vocab, train.max(initial=0) + 1, evals.max(initial=0) + 1))
    uni = np.bincount(train, minlength=vocab).astype(float)
    logp_uni = np.log(uni + 1.0) - np.log(uni.sum() + vocab)
    big = np.bincount(train[:-1] * vocab + train[1:], minlength=vocab * vocab).astype(float).reshape(vocab, vocab)
    ctx = big.sum(axis=1)
    a, b = evals[:-1], evals[1:]
    logp_big = np.log(big[a, b] + 1.0) - np.log(ctx[a] + vocab)
    unigram = -float(logp_uni[evals].mean())
    bigram = -float((logp_uni[evals[0]] + logp_big.sum()) / len(evals))
    return {"unigram": unigram, "bigram": bigram}


def _eval_sets(config: dict) -> list[dict]:
    return list((config.get("eval") or {}).get("sets") or [])


def recipe_baselines(config: dict, cache_dir: str | Path | None = None) -> dict[str, dict[str, float]]:
    """eval set name -> {unigram, bigram} for the recipe of one cell's resolved config (a record's `config`)."""
    from omegaconf import OmegaConf

    from proxyscale.config import DataConfig, SourceConfig
    from proxyscale.data.cache import Tokenizer, eval_tokens, recipe_tokens

    cache_dir = str(cache_dir or config["paths"]["cache_dir"])
    data = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.create(config["data"]))
    tokens, meta = recipe_tokens(data, cache_dir)
    n_eval = int(config["eval"]["tokens_per_set"])
    folder = Path(cache_dir) / "baselines"
    folder.mkdir(parents=True, exist_ok=True)
    vocab = None
    out = {}
    for raw in _eval_sets(config):
        es = OmegaConf.merge(OmegaConf.structured(SourceConfig), OmegaConf.create(raw))
        ev, emeta = eval_tokens(es, data.tokenizer, n_eval, cache_dir)
        path = folder / f"{meta['key']}-{emeta['key']}.json"
        if path.exists():
            try:
                cached = json.loads(path.read_text())
                if cached.get("version") == VERSION:
                    out[raw["name"]] = {"unigram": cached["unigram"], "bigram": cached["bigram"]}
                    continue
            except (OSError, ValueError, KeyError):
                pass
        if vocab is None:
            vocab = Tokenizer(data.tokenizer).vocab_size
        res = unigram_bigram_loss(tokens, ev, vocab)
        rec: dict[str, Any] = {"version": VERSION, **res, "recipe": str(data.name), "eval_set": raw["name"],
                               "recipe_key": meta["key"], "eval_key": emeta["key"], "train_tokens": int(len(tokens)),
                               "eval_tokens": int(len(ev)), "smoothing": "add-one"}
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(rec, indent=1))
        os.replace(tmp, path)
        out[raw["name"]] = res
    return out
