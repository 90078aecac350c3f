"""Curation steps: document-list transforms that change a recipe's quality the way real ones do.

A step is `{op: NAME, sources: [..optional subset..], **params}` in a recipe's `steps` list. Steps
run in order on each source's documents before mixing. Some clean (exact dedup, heuristic quality
filters); others degrade on purpose (duplication, character noise) so a grid holds recipes whose
relative quality is known in advance.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from proxyscale.config import ConfigError, DataConfig
from proxyscale.data import classify, select
from proxyscale.data.sources import Document, text_hash
from proxyscale.extras import missing

_WORD = re.compile(r"[A-Za-z]+")


def exact_dedup(docs: list[Document], rng: random.Random) -> list[Document]:
    """Keep the first copy of each text (whitespace-normalised)."""
    seen, out = set(), []
    for d in docs:
        h = text_hash(" ".join(d.text.split()))
        if h not in seen:
            seen.add(h)
            out.append(d)
    return out


def quality_filter(
    docs: list[Document],
    rng: random.Random,
    min_chars: int = 400,
    min_alpha_frac: float = 0.5,
    max_dup_line_frac: float = 0.3,
    max_symbol_frac: float = 0.25,
    min_mean_word_len: float = 2.5,
    max_mean_word_len: float = 12.0,
) -> list[Document]:
    """Gopher/C4-style heuristics: drop short, symbol-heavy, line-repetitive or non-word documents."""
    out = []
    for d in docs:
        t = d.text
        if len(t) < min_chars:
            continue
        non_space = sum(not c.isspace() for c in t) or 1
        if sum(c.isalpha() for c in t) / non_space < min_alpha_frac:
            continue
        if sum(c in "#{}[]<>|\\~^=*_" for c in t) / non_space > max_symbol_frac:
            continue
        lines = [ln.strip() for ln in t.splitlines() if ln.strip()]
        if lines and 1 - len(set(lines)) / len(lines) > max_dup_line_frac:
            continue
        words = _WORD.findall(t)
        mean = sum(map(len, words)) / len(words) if words else 0
        if not (min_mean_word_len <= mean <= max_mean_word_len):
            continue
        out.append(d)
    return out


def near_dedup(docs: list[Document], rng: random.Random, threshold: float = 0.8, num_perm: int = 64, shingle: int = 5) -> list[Document]:
    """Drop documents whose word-shingle Jaccard similarity to a kept one exceeds `threshold`
    (MinHash + LSH from datasketch), keeping the first of each near-duplicate cluster."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    out = []
    for i, d in enumerate(docs):
        words = d.text.split()
        grams = {" ".join(words[j : j + shingle]) for j in range(max(1, len(words) - shingle + 1))}
        mh = MinHash(num_perm=num_perm, seed=1)
        mh.update_batch([g.encode("utf-8", "replace") for g in grams])
        if not lsh.query(mh):
            lsh.insert(str(i), mh)
            out.append(d)
    return out


def _ngram_counts(texts: list[str], buckets: int) -> np.ndarray:
    """Hashed word unigram+bigram counts: the feature space of DSIR-style importance scores."""
    counts = np.ones(buckets)
    for t in texts:
        words = _WORD.findall(t.lower())
        feats = words + [a + " " + b for a, b in zip(words, words[1:])]
        np.add.at(counts, [hash_bucket(f, buckets) for f in feats], 1)
    return counts


def hash_bucket(feature: str, buckets: int) -> int:
    return int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=4).digest(), "big") % buckets


def select_like(
    docs: list[Document], rng: random.Random, target: str = "python_docs", keep_frac: float = 0.5, buckets: int = 4096, cache_dir: str | None = None
) -> list[Document]:
    """Model-based selection (the DSIR idea): score each document by the log-likelihood ratio of
    its hashed n-grams under the target corpus vs the candidate pool, keep the top `keep_frac`.
    The target is the training side of a built-in corpus, so no eval text steers the selection."""
    from proxyscale.config import SourceConfig
    from proxyscale.data.sources import load_documents

    target_docs = load_documents(SourceConfig(name=target, path=target), "train", cache_dir)
    log_ratio = np.log(_ngram_counts([d.text for d in target_docs], buckets)) - np.log(_ngram_counts([d.text for d in docs], buckets))
    log_ratio -= np.log(np.exp(log_ratio).sum())

    def score(d: Document) -> float:
        words = _WORD.findall(d.text.lower())
        feats = words + [a + " " + b for a, b in zip(words, words[1:])]
        return float(np.mean([log_ratio[hash_bucket(f, buckets)] for f in feats])) if feats else -np.inf

    ranked = sorted(docs, key=score, reverse=True)
    return ranked[: max(1, int(round(keep_frac * len(docs))))]


def duplicate(docs: list[Document], rng: random.Random, factor: int = 8) -> list[Document]:
    """Every document `factor` times, in random order. A pool step: it runs on the documents
    selected for the pool, which are then 1/factor of its tokens, so each is seen ~factor times."""
    out = [d for d in docs for _ in range(factor)]
    rng.shuffle(out)
    return out


def corrupt(docs: list[Document], rng: random.Random, frac: float = 0.3, rate: float = 0.3) -> list[Document]:
    """Replace `rate` of the characters of a random `frac` of documents with random printable ones."""
    alphabet = [chr(c) for c in range(32, 127)]
    out = []
    for d in docs:
        if rng.random() < frac:
            chars = [rng.choice(alphabet) if rng.random() < rate else c for c in d.text]
            d = Document(d.id + ":noisy", "".join(chars))
        out.append(d)
    return out


def shuffle_words(docs: list[Document], rng: random.Random, frac: float = 0.3) -> list[Document]:
    """Shuffle the word order of a random `frac` of documents (destroys syntax, keeps vocabulary)."""
    out = []
    for d in docs:
        if rng.random() < frac:
            words = d.text.split()
            rng.shuffle(words)
            d = Document(d.id + ":shuffled", " ".join(words))
        out.append(d)
    return out


@dataclass(frozen=True)
class Step:
    """A registered curation step. `version` enters every cache key built with it: bump it when the
    step's code changes what it keeps, and cached pools made by the old code are never reused.
    stage "documents": runs on each source's documents before mixing; "pool": runs on the documents
    the mixture picked, which `repeats` x tokens of (repeats(**params) = how many times the step
    multiplies the picked text)."""

    fn: Callable[..., list[Document]]
    version: int = 1
    stage: str = "documents"
    repeats: Callable[..., int] | None = None
    # What besides its params determines what the step keeps (a scoring model's identity):
    # inputs(**params) -> dict enters the step's cache key, the recipe's and the run id, and is
    # passed back to fn as `inputs=` so the step can check it scores with what the key names.
    inputs: Callable[..., dict] | None = None
    corpora: bool = False  # reads a built-in corpus: fn and inputs are given cache_dir (the extracted corpora, not a re-extraction)


STEPS: dict[str, Step] = {
    "exact_dedup": Step(exact_dedup),
    "near_dedup": Step(near_dedup),
    "select_like": Step(select_like, corpora=True),
    "quality_filter": Step(quality_filter),
    "duplicate": Step(duplicate, stage="pool", repeats=lambda factor=8: int(factor)),
    "corrupt": Step(corrupt),
    "shuffle_words": Step(shuffle_words),
    "select_by_proxy": Step(select.select_by_proxy, version=1, inputs=select.scorer_identity),
    "classifier_filter": Step(classify.classifier_filter, version=1, inputs=classify.classifier_identity, corpora=True),
}

_RESERVED = ("op", "sources", "version", "inputs", "cache_dir")  # step keys that are not the step function's params (cache_dir: given, never set)


def _applies(step: dict, source: str) -> bool:
    return not step.get("sources") or source in step["sources"]


def pool_factor(data: DataConfig, source: str) -> int:
    """How many times the pool steps repeat each selected document of `source`."""
    f = 1
    for step in pool_steps(data, source):
        f *= STEPS[step["op"]].repeats(**_params(step))
    return f


def step_versions(data: DataConfig) -> dict[str, int]:
    """{op: version} of the steps a recipe uses: part of its cache key."""
    return {st["op"]: STEPS[st["op"]].version for st in data.steps}


def _params(step: dict) -> dict:
    return {k: v for k, v in step.items() if k not in _RESERVED}


def step_inputs(steps, cache_dir: str | None = None) -> list[dict]:
    """The inputs (Step.inputs) of the steps that have some, e.g. the scorer of select_by_proxy:
    [{step: index, op, ...}]. Empty for every other recipe, so their cache keys and run ids stay as
    they were. Raises ConfigError when an input cannot be resolved (a missing scorer)."""
    out = []
    for i, st in enumerate(steps or []):
        op = st.get("op")
        if op in STEPS and STEPS[op].inputs is not None:
            out.append({"step": i, "op": op, **STEPS[op].inputs(**_params(st), **_corpora(op, cache_dir))})
    return out


def _corpora(op: str, cache_dir: str | None) -> dict:
    return {"cache_dir": cache_dir} if STEPS[op].corpora else {}


def check_steps(data: DataConfig, cache_dir: str | None = None) -> None:
    import inspect

    names = {s.name for s in data.sources}
    for i, step in enumerate(data.steps):
        op = step.get("op")
        if op not in STEPS:
            raise ConfigError(f"recipe {data.name}: step {i} has unknown op {op!r} (choose from: {', '.join(STEPS)})")
        if op == "near_dedup" and missing("datasketch"):
            raise ConfigError(f"recipe {data.name}: step {i}: {missing('datasketch')}")
        allowed = set(inspect.signature(STEPS[op].fn).parameters) - {"docs", "rng", "inputs", "cache_dir"}
        unknown = set(_params(step)) - allowed | ({"inputs", "cache_dir"} & set(step))
        if unknown:
            raise ConfigError(f"recipe {data.name}: step {op} has unknown parameter(s) {sorted(unknown)} (allowed: {sorted(allowed)})")
        if op == "select_like" and not 0 < float(step.get("keep_frac", 0.5)) <= 1:
            raise ConfigError(f"recipe {data.name}: select_like keep_frac must be in (0, 1]")
        if op == "select_like":
            from proxyscale.data.sources import BUILTIN

            if step.get("target", "python_docs") not in BUILTIN:
                raise ConfigError(f"recipe {data.name}: select_like target must be a built-in corpus ({', '.join(BUILTIN)})")
        if op == "select_by_proxy":
            p = _params(step)
            select.check(
                p.get("proxy"),
                p.get("keep_frac", 0.5),
                p.get("band", "low"),
                p.get("max_tokens_per_doc", 512),
                data.tokenizer,
                p.get("proxy_size"),
                where=f"recipe {data.name}: step {i} select_by_proxy",
            )
        if op == "classifier_filter":
            p = _params(step)
            if not 0 < float(p.get("keep_frac", 0.5)) <= 1:
                raise ConfigError(f"recipe {data.name}: classifier_filter keep_frac must be in (0, 1]")
            classify.classifier_identity(**p, cache_dir=cache_dir)  # the positives must be readable now, before anything runs
        if op == "duplicate" and int(step.get("factor", 8)) < 1:
            raise ConfigError(f"recipe {data.name}: duplicate factor must be >= 1")
        absent = set(step.get("sources") or []) - names
        if absent:
            raise ConfigError(f"recipe {data.name}: step {op} names missing source(s) {sorted(absent)}")


def doc_steps(data: DataConfig, source: str) -> list[dict]:
    """The document steps that apply to `source`, in order, each with its step version (pool steps run later)."""
    out = []
    for st in data.steps:
        step = STEPS[st["op"]]
        if step.stage == "documents" and _applies(st, source):
            out.append({**st, "version": step.version, **({"inputs": step.inputs(**_params(st))} if step.inputs else {})})
    return out


def pool_steps(data: DataConfig, source: str) -> list[dict]:
    """The pool steps that apply to `source`, in order."""
    return [dict(st) for st in data.steps if STEPS[st["op"]].stage == "pool" and _applies(st, source)]


def run_step(step: dict, docs: list[Document], rng: random.Random, recipe: str, source: str, cache_dir: str | None = None) -> list[Document]:
    extra = ({"inputs": step["inputs"]} if "inputs" in step else {}) | _corpora(step["op"], cache_dir)
    out = STEPS[step["op"]].fn(docs, rng, **_params(step), **extra)
    if not out:
        raise ConfigError(f"recipe {recipe}: step {step['op']} kept zero documents of source {source!r}")
    return out
