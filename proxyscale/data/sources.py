"""Documents from a source: built-in offline corpora, Hugging Face hub datasets, local files.

The built-in corpora are real text that exists wherever proxyscale is installed, so the demo needs
no network: Python's own documentation (prose), the standard library's source (code), the READMEs
of installed packages (markdown prose) and their licence files (boilerplate). Each built-in corpus
is split once, by a hash of the text, into a training side and a held-out side; eval sets read only
the held-out side, so no recipe can train on an eval document.
"""

from __future__ import annotations

import ast
import functools
import glob
import hashlib
import importlib.metadata
import json
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from proxyscale.config import ConfigError, SourceConfig

HOLDOUT_PER_MILLE = {"pkg": 250, "stdlib": 100, "topic": 100}  # by group prefix; never trained on
MIN_DOC_CHARS = 200
CORPUS_VERSION = 7  # bump when extraction or the split changes: every cache key changes with it


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    group: str = ""  # documents of one group (a module's code and its docstrings) share a side


def text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).digest(), "big")


def norm_hash(text: str) -> int:
    return text_hash(" ".join(text.split()))


def is_heldout(doc: Document) -> bool:
    """Deterministic split by group (else content): a module's docstrings and its source code
    always fall on the same side, so no eval text hides inside another corpus's training side."""
    return text_hash(doc.group or doc.text) % 1000 < HOLDOUT_PER_MILLE.get(doc.group.split(":")[0], 100)


# ---- built-in corpora -------------------------------------------------------------------------

# Tests, GUI code and the codec tables of encodings/ (hex data, not code) stay out.
_SKIP_DIRS = {
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "turtledemo",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "ensurepip",
    "venv",
    "tkinter",
    "encodings",
    "pydoc_data",
}


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("test"))
        out += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py") and not f.startswith("test")]
    return out


def _module(path: Path) -> str:
    """Group key of a stdlib file: its module, with pure-Python twins (_pyio/io,
    _pydecimal/decimal) in one group since they share most of their docstrings."""
    rel = path.relative_to(sysconfig.get_paths()["stdlib"])
    top = rel.parts[0].removesuffix(".py").lstrip("_")
    return "stdlib:" + (top[2:] if top.startswith("py") and len(top) > 4 else top)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _docstrings(node: ast.AST) -> Iterator[str]:
    """Docstrings of a module and every class/function in it, visiting statements only
    (ast.walk would also visit every expression node: ten times slower on the stdlib)."""
    if isinstance(node, (ast.Module, *_DEFS)):
        doc = ast.get_docstring(node)
        if doc:
            yield doc
    for field in ("body", "orelse", "finalbody", "handlers"):
        for child in getattr(node, field, ()):
            if isinstance(child, ast.stmt) or isinstance(child, ast.excepthandler):
                yield from _docstrings(child)


def python_docs() -> Iterator[Document]:
    """English prose: the language reference topics and every stdlib module's docstrings."""
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield Document(f"topic:{key}", topics[key], f"topic:{key}")
    for path in _stdlib_files():
        src = _read(path)
        if src is None:
            continue
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        text = "\n\n".join(d for d in _docstrings(tree) if len(d) > 40)
        if text:
            yield Document(f"docstrings:{path.name}", text, _module(path))


def python_code() -> Iterator[Document]:
    """Source code: the standard library's modules, one document per file."""
    for path in _stdlib_files():
        src = _read(path)
        if src is not None and len(src) < 300_000:
            yield Document(f"code:{path.name}", src, _module(path))


def _distributions() -> list[importlib.metadata.Distribution]:
    """The installed packages, proxyscale itself left out: its README is this project's own page, which changes with
    every commit under one version, so it would change the corpus behind an unchanged fingerprint (and run id)."""
    seen, out = {"proxyscale"}, []
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name and name not in seen:
            seen.add(name)
            out.append(dist)
    return sorted(out, key=lambda d: d.metadata["Name"].lower())


def package_readmes() -> Iterator[Document]:
    """Markdown/reST prose: the long descriptions (READMEs) of the installed packages."""
    for dist in _distributions():
        body = dist.metadata.get_payload() or dist.metadata["Description"] or ""
        if isinstance(body, str) and body.strip():
            yield Document(f"readme:{dist.metadata['Name']}", body, f"pkg:{dist.metadata['Name'].lower()}")


def licenses() -> Iterator[Document]:
    """Boilerplate: licence and notice files shipped with Python and the installed packages."""
    base = Path(sys.base_prefix)
    for cand in sorted(glob.glob(str(base / "lib" / "python3*" / "LICENSE.txt"))):
        text = _read(Path(cand))
        if text:
            yield Document("license:python", text, "pkg:python")
    for dist in _distributions():
        for f in dist.files or []:
            name = f.name.upper()
            if any(k in name for k in ("LICENSE", "LICENCE", "COPYING", "NOTICE")) and not name.endswith((".PY", ".PYC")):
                text = _read(Path(dist.locate_file(f)))
                if text:
                    yield Document(f"license:{dist.metadata['Name']}:{f.name}", text, f"pkg:{dist.metadata['Name'].lower()}")


BUILTIN: dict[str, Callable[[], Iterator[Document]]] = {
    "python_docs": python_docs,
    "python_code": python_code,
    "package_readmes": package_readmes,
    "licenses": licenses,
}


def corpus_file(name: str, cache_dir: str) -> Path:
    """Where builtin_corpus keeps a built-in corpus once extracted in cache_dir."""
    return Path(cache_dir, "corpora", f"{name}-{builtin_fingerprint()}.jsonl")


@functools.lru_cache(maxsize=None)
def builtin_corpus(name: str, cache_dir: str | None = None) -> tuple[Document, ...]:
    """A built-in corpus, extracted once per machine (in cache_dir) and once per process."""
    path = corpus_file(name, cache_dir) if cache_dir else None
    if path is not None and path.exists():
        try:
            return tuple(Document(*json.loads(line)) for line in path.read_text().splitlines())
        except (OSError, ValueError, TypeError) as exc:
            import logging

            logging.getLogger("proxyscale").warning(f"corpus cache {path}: unreadable ({type(exc).__name__}: {str(exc)[:120]}); extracting again")
    docs = tuple(d for d in BUILTIN[name]() if len(d.text) >= MIN_DOC_CHARS)
    if path is not None:
        from proxyscale.record import atomic_write_text

        atomic_write_text(path, "\n".join(json.dumps([d.id, d.text, d.group]) for d in docs))
    return docs


@functools.lru_cache(maxsize=None)
def builtin_fingerprint() -> str:
    """Changes when the text behind the built-in corpora can change (Python or package versions)."""
    dists = ",".join(f"{d.metadata['Name']}=={d.version}" for d in _distributions())
    return hashlib.sha256(f"{CORPUS_VERSION}|{sys.version}|{dists}|{HOLDOUT_PER_MILLE}".encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def heldout_hashes(cache_dir: str | None = None) -> frozenset[int]:
    return frozenset(norm_hash(d.text) for name in BUILTIN for d in builtin_corpus(name, cache_dir) if is_heldout(d))


# ---- hub and local files ----------------------------------------------------------------------

_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text", ".text": "text"}


def _file_format(src: SourceConfig) -> str:
    if src.format:
        return {"jsonl": "json"}.get(src.format, src.format)
    return _FORMATS.get(Path(src.path).suffix, "text")


def _local_files(src: SourceConfig) -> list[str]:
    """The files a local path or glob names; a relative one that matches nothing from the working directory is
    looked up under proxyscale's conf/ (the shipped task sets: eval/data/tasks_mc.jsonl)."""
    path = os.path.expanduser(src.get("path"))
    found = sorted(glob.glob(path))
    if not found and not os.path.isabs(path):
        from proxyscale.config import CONF_DIR

        found = sorted(glob.glob(os.path.join(CONF_DIR, path)))
    return found


_DIGESTS: dict[tuple, str] = {}  # (real path, size, mtime_ns, ctime_ns, inode) -> sha256 of the bytes, in this process


def file_digest(path: str, cache_dir: str | None = None) -> str:
    """sha256 of a local data file's bytes, hashed once per content: memoised by (path, size, mtime, ctime, inode) in this
    process and, with cache_dir, in <cache_dir>/fingerprints/ for the next process. An edit in place changes the size or
    the mtime, and always the ctime (which no tool sets back), so a stale digest is never served."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError as exc:
        raise ConfigError(f"local data file {path}: unreadable ({exc.strerror})") from None
    stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    key = (real, *stamp)
    if key in _DIGESTS:
        return _DIGESTS[key]
    memo = Path(cache_dir, "fingerprints", hashlib.sha256(real.encode()).hexdigest()[:24] + ".json") if cache_dir else None
    digest = None
    if memo is not None:
        try:
            doc = json.loads(memo.read_text())
            digest = doc["sha256"] if doc.get("path") == real and doc.get("stamp") == stamp else None
        except (OSError, ValueError, KeyError, TypeError):
            digest = None
    if digest is None:
        digest = _hash_file(real, path)
        if memo is not None:
            from proxyscale.record import atomic_write_text

            try:
                atomic_write_text(memo, json.dumps({"path": real, "stamp": stamp, "sha256": digest}))
            except OSError:  # a read-only cache folder: hashed again by the next process, nothing worse
                pass
    _DIGESTS[key] = digest
    return digest


def _hash_file(real: str, shown: str) -> str:
    h = hashlib.sha256()
    try:
        with open(real, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise ConfigError(f"local data file {shown}: unreadable ({exc.strerror})") from None
    return h.hexdigest()


def files_fingerprint(src, cache_dir: str | None = None) -> str | None:
    """What a `kind: files` source reads, by content: a hash of each matched file's name and bytes (None for other
    kinds). Run ids and cache keys carry it, so a file edited in place is another cell and another cache."""
    if src.get("kind") != "files" or not src.get("path"):
        return None
    h = hashlib.sha256()
    for f in _local_files(src):
        h.update(f"{os.path.basename(f)}\0{file_digest(f, cache_dir)}\n".encode())
    return h.hexdigest()[:16]


def check_source(src: SourceConfig) -> None:
    """Fail early, in one line, on a source that cannot be read (and, for a benchmark task set in local
    files, on any item that cannot be scored: every item is read here, before anything runs)."""
    task = src.get("task", "lm") if hasattr(src, "get") else getattr(src, "task", "lm")
    if task not in ("lm", "mc", "cloze"):
        raise ConfigError(f"eval set {src.name!r}: task must be lm, mc or cloze, got {task!r}")
    preprocess = src.get("preprocess") if hasattr(src, "get") else getattr(src, "preprocess", None)
    if preprocess not in (None, "hellaswag") or (preprocess and task != "mc"):
        raise ConfigError(f"eval set {src.name!r}: preprocess must be hellaswag (an mc set) or unset, got {preprocess!r}")
    if task != "lm":
        if src.kind not in ("files", "hf"):
            raise ConfigError(f"eval set {src.name!r}: task {task} needs kind files or hf (items with fields), got kind {src.kind!r}")
        if src.kind == "files" and src.format == "text":
            raise ConfigError(f"eval set {src.name!r}: task {task} needs json, jsonl or parquet items, got format text")
    if src.kind == "builtin":
        if (src.path or src.name) not in BUILTIN:
            raise ConfigError(f"source {src.name!r}: unknown built-in corpus {(src.path or src.name)!r} (choose from: {', '.join(BUILTIN)})")
    elif src.kind == "files":
        if not src.path:
            raise ConfigError(f"source {src.name!r}: kind=files needs a path")
        files = _local_files(src)
        if not files:
            raise ConfigError(f"source {src.name!r}: no local dataset file matches {src.path!r}")
        empty = [f for f in files if os.path.isfile(f) and os.path.getsize(f) == 0]
        if len(empty) == len(files):
            raise ConfigError(
                f"source {src.name!r}: {empty[0]} is empty" if len(files) == 1 else f"source {src.name!r}: every file matching {src.path!r} is empty"
            )
        if src.format and src.format not in ("json", "jsonl", "parquet", "text"):
            raise ConfigError(f"source {src.name!r}: format must be json, jsonl, parquet or text, got {src.format!r}")
    elif src.kind == "hf":
        if not src.path:
            raise ConfigError(f"source {src.name!r}: kind=hf needs a hub dataset id in path")
        from proxyscale.extras import missing

        if missing("datasets"):
            raise ConfigError(f"source {src.name!r}: {missing('datasets')}")
    else:
        raise ConfigError(f"source {src.name!r}: kind must be builtin, hf or files, got {src.kind!r}")
    if task != "lm" and src.kind == "files":
        load_items(src)  # small files: every item is checked now, so a bad one stops the grid in one line


# ---- benchmark task items (proxyscale/data/tasks.py) -----------------------------------------


def _local_rows(src: SourceConfig, what: str = "eval set") -> Iterator[tuple[str, int, dict]]:
    """(file, 1-based row number, row) of local json/jsonl/parquet/text files, read directly and streamed (no
    `datasets`: your own files need no extra; a text file's rows are its lines, as {"text": line})."""
    fmt = _file_format(src)
    for path in _local_files(src):
        if fmt == "parquet":
            import pyarrow.parquet as pq

            try:
                n = 0
                for batch in pq.ParquetFile(path).iter_batches():
                    for r in batch.to_pylist():
                        n += 1
                        yield path, n, r
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{what} {src.name!r}: {path} is not a readable parquet file ({type(exc).__name__})") from None
            continue
        try:
            with open(path, encoding="utf-8-sig") as f:  # a byte-order mark (some editors write one) is not part of the JSON
                if fmt == "text":
                    yield from ((path, i + 1, {"text": line.rstrip("\r\n")}) for i, line in enumerate(f))
                    continue
                head = f.read(4096)
                f.seek(0)
                if head.lstrip().startswith("["):
                    try:
                        rows = json.load(f)
                    except ValueError as exc:
                        raise ConfigError(f"{what} {src.name!r}: {path} is not valid JSON ({str(exc)[:80]})") from None
                    yield from ((path, i + 1, r) for i, r in enumerate(rows))
                    continue
                for i, line in enumerate(f):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except ValueError:
                        raise ConfigError(f"{what} {src.name!r}: {path} line {i + 1} is not a JSON object") from None
                    yield path, i + 1, row
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{what} {src.name!r}: {path} is unreadable ({type(exc).__name__})") from None


def load_items(src: SourceConfig) -> list:
    """The items of a benchmark task set (task mc or cloze), at most max_docs, each checked: one line naming the
    set, file and item on the first that cannot be scored, or when there is none."""
    from proxyscale.data.tasks import TaskError, item_from_row

    items = []
    try:
        if src.kind == "files":
            for path, line, row in _local_rows(src):
                if src.max_docs is not None and len(items) >= src.max_docs:
                    break
                items.append(item_from_row(row, src, f"eval set {src.name!r}: {path} item {len(items) + 1} (line {line})"))
            where = src.path
        else:
            from proxyscale.extras import need

            datasets = need("datasets")
            where = f"hub dataset {src.path}" + (f"/{src.config_name}" if src.config_name else "")
            try:
                ds = datasets.load_dataset(src.path, src.config_name, split=src.split, streaming=True)
                for i, row in enumerate(ds):
                    if src.max_docs is not None and i >= src.max_docs:
                        break
                    items.append(item_from_row(row, src, f"eval set {src.name!r}: {where} item {i + 1}"))
            except TaskError:
                raise
            except Exception as exc:  # network, auth or a missing dataset: one line
                raise ConfigError(f"source {src.name!r}: cannot load {where} ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]})") from None
    except TaskError as exc:
        raise ConfigError(str(exc)) from None
    if not items:
        raise ConfigError(f"eval set {src.name!r}: no {src.task} items in {where}")
    return items


def _documents(src: SourceConfig) -> Iterator[Document]:
    """Local files (read directly) and hub datasets (streamed through `datasets`, so a large corpus is never fully
    loaded): a document per row's text_field (per line of a text file)."""
    if src.kind == "files":
        where = src.path
        rows = (row for _, _, row in _local_rows(src, "source"))
        field = "text" if _file_format(src) == "text" else src.text_field
    else:
        from proxyscale.extras import need

        datasets = need("datasets")
        where = f"hub dataset {src.path}" + (f"/{src.config_name}" if src.config_name else "")
        try:
            rows = datasets.load_dataset(src.path, src.config_name, split=src.split, streaming=True)
        except Exception as exc:  # network, auth or a missing dataset: say what is missing, in one line
            raise ConfigError(f"source {src.name!r}: cannot load {where} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        field = src.text_field
    for i, row in enumerate(rows):
        if src.max_docs is not None and i >= src.max_docs:
            break
        if field not in row:
            raise ConfigError(f"source {src.name!r}: {where} has no field {field!r} (fields: {', '.join(row)})")
        text = row[field]
        if isinstance(text, str) and text.strip():
            yield Document(f"{src.name}:{i}", text)


def load_documents(src: SourceConfig, side: str, cache_dir: str | None = None) -> list[Document]:
    """All documents of a source. side='train' or 'heldout' selects a built-in corpus's split;
    external sources are used as given (their split is chosen by `split`)."""
    if src.kind == "builtin":
        docs = [d for d in builtin_corpus(src.path or src.name, cache_dir) if is_heldout(d) == (side == "heldout")]
        if side == "train":  # a text that also occurs on the held-out side of any corpus stays out
            docs = [d for d in docs if norm_hash(d.text) not in heldout_hashes(cache_dir)]
        return docs[: src.max_docs] if src.max_docs else docs
    return list(_documents(src))
