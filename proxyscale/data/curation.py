"""Curation steps: document-list transforms that change a recipe's quality the way real ones do.

A step is `{op: NAME, sources: [..optional subset..], **params}` in a recipe's `steps` list. Steps
run in order on each source's documents before mixing. Some clean (exact dedup, heuristic quality
filters); others degrade on purpose (duplication, character noise) so a grid holds recipes whose
relative quality is known in advance.
"""
from __future__ import annotations

import random
import re
from typing import Callable

from proxyscale.config import ConfigError, DataConfig
from proxyscale.data.sources import Document, text_hash

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


STEPS: dict[str, Callable[..., list[Document]]] = {
    "exact_dedup": exact_dedup,
    "quality_filter": quality_filter,
    "duplicate": duplicate,
    "corrupt": corrupt,
    "shuffle_words": shuffle_words,
}


POOL_STEPS = {"duplicate"}  # run after the mixture has picked its documents


def pool_factor(data: DataConfig, source: str) -> int:
    """How many times the pool repeats each selected document of `source`."""
    f = 1
    for step in data.steps:
        if step["op"] == "duplicate" and (not step.get("sources") or source in step["sources"]):
            f *= int(step.get("factor", 8))
    return f


def _params(step: dict) -> dict:
    return {k: v for k, v in step.items() if k not in ("op", "sources")}


def check_steps(data: DataConfig) -> None:
    import inspect

    names = {s.name for s in data.sources}
    for i, step in enumerate(data.steps):
        op = step.get("op")
        if op not in STEPS:
            raise ConfigError(f"recipe {data.name}: step {i} has unknown op {op!r} (choose from: {', '.join(STEPS)})")
        allowed = set(inspect.signature(STEPS[op]).parameters) - {"docs", "rng"}
        unknown = set(_params(step)) - allowed
        if unknown:
            raise ConfigError(f"recipe {data.name}: step {op} has unknown parameter(s) {sorted(unknown)} (allowed: {sorted(allowed)})")
        if op == "duplicate" and int(step.get("factor", 8)) < 1:
            raise ConfigError(f"recipe {data.name}: duplicate factor must be >= 1")
        missing = set(step.get("sources") or []) - names
        if missing:
            raise ConfigError(f"recipe {data.name}: step {op} names missing source(s) {sorted(missing)}")


def apply_steps(source: str, docs: list[Document], data: DataConfig) -> tuple[list[Document], list[dict]]:
    """Run the recipe's steps on one source's documents; return them and per-step keep counts."""
    rng = random.Random(f"{data.seed}:{source}")
    stats = []
    for step in data.steps:
        if step["op"] in POOL_STEPS or (step.get("sources") and source not in step["sources"]):
            continue
        before = len(docs)
        docs = STEPS[step["op"]](docs, rng, **_params(step))
        stats.append({"source": source, "op": step["op"], "docs_in": before, "docs_out": len(docs)})
        if not docs:
            raise ConfigError(f"recipe {data.name}: step {step['op']} kept zero documents of source {source!r}")
    return docs, stats
