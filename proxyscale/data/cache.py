"""Tokenize once, reuse everywhere: content-hashed, memory-mapped token arrays.

A recipe's pool and each eval set are built on first use and stored as `<cache_dir>/<kind>/<key>.bin`
(uint16 tokens) beside `<key>.json` (how it was made: per-source and per-step counts). The key hashes
everything that determines the tokens, so every cell of every sweep that uses the same recipe reads
the same file, and a changed recipe can never be served stale tokens. A file lock lets parallel
workers share the build; the rename at the end makes a half-written cache impossible to read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
from filelock import FileLock
from omegaconf import OmegaConf

from proxyscale.config import ConfigError, DataConfig, SourceConfig, data_identity, source_identity, subset_members
from proxyscale.data.curation import doc_steps, pool_factor, pool_steps, run_step, step_inputs, step_versions
from proxyscale.data.sources import Document, builtin_fingerprint, files_fingerprint, load_documents, text_hash
from proxyscale.data.tokenizer import Tokenizer
from proxyscale.record import atomic_write_bytes

log = logging.getLogger("proxyscale")


def _key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _plain(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)


def _cached(
    cache_dir: str, kind: str, payload: dict, build: Callable[[], tuple[np.ndarray, dict]], verify: bool = False, what: str = ""
) -> tuple[np.ndarray, dict]:
    """The tokens cached under the payload's key, built on a miss. The meta file states the .bin's
    token count and sha256: the length is checked on every open, the hash on the first open in a process
    (VERIFIED) and on every open with `verify`; a meta that is not JSON, a .bin of another length or hash
    is rebuilt with a warning naming the file. Both files are written atomically (no litter after ENOSPC)."""
    folder = Path(cache_dir) / kind
    folder.mkdir(parents=True, exist_ok=True)
    key = _key(payload)
    bin_path, meta_path = folder / f"{key}.bin", folder / f"{key}.json"
    with FileLock(str(folder / f"{key}.lock")):
        meta = _check_cache(bin_path, meta_path, verify)
        if meta is None:
            t0 = time.perf_counter()
            log.info(f"building token cache {what or kind} -> {bin_path}")
            tokens, meta = build()
            data = np.ascontiguousarray(tokens, dtype=np.uint16).tobytes()
            meta = {**meta, "key": key, "n_tokens": len(data) // 2, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "payload": payload}
            _write_cache(bin_path, data)
            _write_cache(meta_path, json.dumps(meta, indent=1).encode())
            VERIFIED.add(_stamp(bin_path))
            log.info(f"built token cache {what or kind}: {len(data) // 2:,} tokens ({len(data) / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
    if meta["n_tokens"] == 0:
        return np.zeros(0, dtype=np.uint16), meta
    return np.memmap(bin_path, dtype=np.uint16, mode="r"), meta


def _check_cache(bin_path: Path, meta_path: Path, verify: bool) -> dict | None:
    """The meta of a cache that is whole (and, with `verify`, has its hash), else None with a warning."""
    if not (bin_path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        n = int(meta["n_tokens"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning(f"token cache {meta_path}: unreadable meta ({type(exc).__name__}: {str(exc)[:120]}); rebuilding")
        return None
    size = bin_path.stat().st_size
    if size != 2 * n:
        log.warning(f"token cache {bin_path}: {size} bytes, its meta says {n} tokens ({2 * n} bytes); rebuilding")
        return None
    if "sha256" not in meta:
        log.warning(f"token cache {meta_path}: no content hash (built by an older proxyscale); rebuilding")
        return None
    stamp = _stamp(bin_path)
    if verify or stamp not in VERIFIED:
        if _sha256(bin_path) != meta["sha256"]:
            log.warning(f"token cache {bin_path}: content hash differs from {meta_path.name}; rebuilding")
            return None
        VERIFIED.add(stamp)
    return meta


# Caches whose hash was checked in this process, by (path, size, mtime, inode): a cache is hashed on its first open in
# a process (a same-length corruption is never trained on), not on every cell. Measured on the 2-core dev machine:
# a 1.5M-token pool (3 MB) costs 3 ms, a 100M-token one (200 MB) 0.33 s, once per process (docs/reliability.md).
VERIFIED: set[tuple] = set()


def _stamp(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns, st.st_ino)


def _write_cache(path: Path, data: bytes) -> None:
    """An atomic cache write whose failure names the file (a full cache disk: which folder to free or move)."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write cache file {path} ({exc.strerror}): free space there or set paths.cache_dir") from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_json(path: Path):
    """A cache's JSON file, or None (with a warning) when it is absent or not JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning(f"cache file {path}: unreadable ({type(exc).__name__}: {str(exc)[:120]}); rebuilding")
        return None


def _take(docs: list[Document], tok: Tokenizer, limit: int) -> list[Document]:
    """Leading documents holding about `limit` tokens; the last one is cut to fit."""
    out, n = [], 0
    for d in docs:
        if n >= limit:
            break
        size = len(tok.encode(d.text)) + 1
        if n + size > limit:  # keep the share exact: large files would overshoot it
            d = Document(d.id, d.text[: max(1, int(len(d.text) * (limit - n) / size))], d.group)
        out.append(d)
        n += size
    return out


def _concat(docs: list[Document], tok: Tokenizer, limit: int) -> np.ndarray:
    """Documents joined by EOS, cut at `limit` tokens."""
    parts, n = [], 0
    for d in docs:
        ids = tok.encode(d.text)
        parts += [ids, np.array([tok.eos], dtype=np.uint16)]
        n += len(ids) + 1
        if n >= limit:
            break
    return np.concatenate(parts)[:limit] if parts else np.zeros(0, dtype=np.uint16)


def _n_bytes(docs: list[Document]) -> int:
    return sum(len(d.text.encode("utf-8", "replace")) for d in docs)


def curated_documents(src: SourceConfig, data: DataConfig, cache_dir: str) -> tuple[list[Document], list[dict]]:
    """A source's training documents after the recipe's document steps. The documents after
    every step prefix are cached, so recipes that share a prefix (same source, same first steps)
    start from the deepest cached one; each step's kept documents and bytes are recorded."""
    steps = doc_steps(data, src.name)
    base = {
        "source": source_identity({k: v for k, v in _plain(src).items() if k not in ("weight", "name")}),
        "seed": data.seed,
        "corpora": builtin_fingerprint(),
    }
    files = files_fingerprint(src, cache_dir)
    if files:  # local files by content (absent for other sources: their keys stay)
        base["files"] = files
    folder = Path(cache_dir) / "steps"
    keys = [_key({**base, "steps": steps[: i + 1]}) for i in range(len(steps))]
    docs, stats, start = None, [], 0
    for i in range(len(steps) - 1, -1, -1):
        meta = _read_json(folder / f"{keys[i]}.json")
        if meta is not None:
            try:
                rows = [json.loads(line) for line in (folder / f"{keys[i]}.jsonl").read_text().splitlines()]
                if len(rows) != meta.get("docs", len(rows)):
                    raise ValueError(f"{len(rows)} documents, its meta says {meta['docs']}")
                docs, stats, start = [Document(*r) for r in rows], meta["stats"], i + 1
                break
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.warning(f"step cache {folder / keys[i]}.jsonl: unreadable ({type(exc).__name__}: {str(exc)[:120]}); rebuilding")
    if docs is None:
        docs = load_documents(src, "train", cache_dir)
    for i in range(start, len(steps)):
        before, before_bytes = len(docs), _n_bytes(docs)
        docs = run_step(steps[i], docs, random.Random(f"{data.seed}:{src.name}:{i}:{steps[i]['op']}"), data.name, src.name, cache_dir)
        stats = stats + [
            {"source": src.name, "op": steps[i]["op"], "docs_in": before, "docs_out": len(docs), "bytes_in": before_bytes, "bytes_out": _n_bytes(docs)}
        ]
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder / f"{keys[i]}.lock")):
            _atomic_text(folder / f"{keys[i]}.jsonl", "\n".join(json.dumps([d.id, d.text, d.group]) for d in docs))
            _atomic_text(folder / f"{keys[i]}.json", json.dumps({"stats": stats, "docs": len(docs)}))
    return docs, stats


def _atomic_text(path: Path, text: str) -> None:
    _write_cache(path, text.encode())


def _recipe_payload(data: DataConfig, cache_dir: str | None = None) -> dict:
    recipe = data_identity({k: v for k, v in _plain(data).items() if k not in ("name", "description")})
    recipe["sources"] = [source_identity(s) for s in recipe.get("sources") or []]  # (task keys at defaults: the keys of before)
    payload = {"recipe": recipe, "corpora": builtin_fingerprint(), "step_versions": step_versions(data)}
    files = {s.name: fp for s in data.sources if (fp := files_fingerprint(s, cache_dir))}
    if files:  # local files by content (absent for other recipes: their keys stay)
        payload["files"] = files
    inputs = step_inputs(data.steps, cache_dir)  # a scoring model's identity (select_by_proxy); absent for other recipes
    if inputs:
        payload["step_inputs"] = inputs
    return payload


def document_group(source: str, doc_id: str, groups: int) -> int:
    """A document's group for subset sweeps: blake2b of "<source name>:<document id>" mod `groups` (the id after
    the document steps, so a step that renames a document, such as corrupt, moves it to another group)."""
    return text_hash(f"{source}:{doc_id}") % groups


def group_of(data: DataConfig, source: str, doc_id: str) -> int:
    """A document's group: by document hash, or (subset_by=source) its source's position in the recipe."""
    if data.get("subset_by", "document") == "source":  # records from before subset_by: by document
        return [s.name for s in data.sources].index(source)
    return document_group(source, doc_id, int(data.subset_groups))


def in_subset(docs: list[Document], source: str, data: DataConfig) -> list[Document]:
    """The documents of `source` whose group the recipe's subset keeps (all of them without a subset). A source
    can lose every document (subset_by=source drops whole sources): the pool is then made of the others."""
    members = subset_members(_plain(data))
    if members is None:
        return docs
    keep = set(members)
    return [d for d in docs if group_of(data, source, d.id) in keep]


def cached_recipe_meta(data: DataConfig, cache_dir: str) -> dict | None:
    """What a recipe's cache recorded (per-source and per-step counts), if it was built (None too when
    a step's input, such as select_by_proxy's scorer, is not there yet)."""
    try:
        payload = _recipe_payload(data, cache_dir)
    except ConfigError:
        return None
    return _read_json(Path(cache_dir) / "recipes" / f"{_key(payload)}.json")


def recipe_tokens(data: DataConfig, cache_dir: str, verify: bool = False) -> tuple[np.ndarray, dict]:
    """The recipe's token pool: each source curated, shuffled, and taken to its mixture share."""
    payload = _recipe_payload(data, cache_dir)

    def build():
        tok = Tokenizer(data.tokenizer)
        parts, sources, steps, kept = [], [], [], {}
        for src in data.sources:
            if src.weight == 0:
                continue
            docs, stats = curated_documents(src, data, cache_dir)
            steps += stats
            before = len(docs)
            docs = in_subset(docs, src.name, data)
            if len(docs) != before:
                steps.append({"source": src.name, "op": "subset", "docs_in": before, "docs_out": len(docs)})
            if docs:
                kept[src.name] = docs
        if not kept:
            raise ConfigError(f"recipe {data.name}: subset {data.subset} keeps no document of any source")
        total_w = sum(s.weight for s in data.sources if s.name in kept)  # a subset that dropped a source: the others share its tokens
        for src in data.sources:
            if src.name not in kept:
                continue
            docs = kept[src.name]
            want = int(round(data.pool_tokens * src.weight / total_w))
            random.Random(f"{data.seed}:{src.name}:order").shuffle(docs)
            factor = pool_factor(data, src.name)
            if factor > 1:  # pick 1/factor of the tokens, then the pool steps repeat the picked documents
                docs = _take(docs, tok, -(-want // factor))
            for i, st in enumerate(pool_steps(data, src.name)):
                before = len(docs)
                docs = run_step(st, docs, random.Random(f"{data.seed}:{src.name}:pool{i}:{st['op']}"), data.name, src.name, cache_dir)
                steps.append({"source": src.name, "op": st["op"], "docs_in": before, "docs_out": len(docs)})
            ids = _concat(docs, tok, want)
            unique = min(len(ids), sum(len(tok.encode(d.text)) + 1 for d in set(docs)))
            if len(ids) < want:
                if not data.repeat:
                    raise ConfigError(
                        f"recipe {data.name}: source {src.name!r} has {len(ids)} tokens after curation but the pool needs {want} "
                        "(set data.repeat=true to repeat it)"
                    )
                ids = np.resize(ids, want)
            parts.append(ids)
            sources.append({"source": src.name, "docs": len(docs), "tokens": want, "unique_tokens": unique})
        tokens = np.concatenate(parts)
        # Interleave sources in 4k-token blocks so any training window is drawn from the true mixture.
        blocks = np.array_split(tokens, max(1, len(tokens) // 4096))
        order = random.Random(f"{data.seed}:blocks").sample(range(len(blocks)), len(blocks))
        return np.concatenate([blocks[i] for i in order]), {"recipe": data.name, "sources": sources, "steps": steps}

    return _cached(cache_dir, "recipes", payload, build, verify, what=f"for recipe {data.name} ({_si(data.pool_tokens)} tokens)")


def eval_tokens(eval_set: SourceConfig, tokenizer: str, n_tokens: int, cache_dir: str, verify: bool = False) -> tuple[np.ndarray, dict]:
    """`n_tokens` of an eval set's held-out documents, an equal slice from each, so the set
    represents the whole held-out side rather than its first few documents."""
    payload = {"eval": source_identity(_plain(eval_set)), "tokenizer": tokenizer, "n_tokens": n_tokens, "corpora": builtin_fingerprint()}
    files = files_fingerprint(eval_set, cache_dir)
    if files:
        payload["files"] = files

    def build():
        tok = Tokenizer(tokenizer)
        docs = sorted(load_documents(eval_set, "heldout", cache_dir), key=lambda d: d.id)
        encoded = [np.append(tok.encode(d.text), np.uint16(tok.eos)) for d in docs]
        if sum(len(e) for e in encoded) < n_tokens:
            raise ConfigError(f"eval set {eval_set.name!r} has only {sum(len(e) for e in encoded)} tokens, eval.tokens_per_set asks for {n_tokens}")
        share = _fair_share([len(e) for e in encoded], n_tokens)
        ids = np.concatenate([e[:k] for e, k in zip(encoded, share)])
        return ids, {"eval_set": eval_set.name, "docs": len(docs), "docs_used": int(sum(k > 0 for k in share))}

    return _cached(cache_dir, "eval", payload, build, verify, what=f"for eval set {eval_set.name} ({_si(n_tokens)} tokens)")


def _si(n: float) -> str:
    return next((f"{n / d:.3g}{u}" for u, d in (("B", 1e9), ("M", 1e6), ("k", 1e3)) if n >= d), str(int(n)))


def _fair_share(lengths: list[int], total: int) -> list[int]:
    """Tokens to take from each document: equal slices, short documents' leftovers redistributed."""
    share = [0] * len(lengths)
    left, open_ = total, [i for i, n in enumerate(lengths) if n > 0]
    while left > 0 and open_:
        each = max(1, left // len(open_))
        for i in list(open_):
            k = min(each, lengths[i] - share[i], left)
            share[i] += k
            left -= k
            if share[i] == lengths[i]:
                open_.remove(i)
            if left == 0:
                break
    return share
