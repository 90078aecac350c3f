"""Selection with proxies: score every document with a trained proxy cell, keep a band of the losses.

The `select_by_proxy` curation step (registered in proxyscale/data/curation.py) is what
perplexity-based pruning studies do with a small reference model: each document's mean per-token
loss under a trained proxy ranks it, and a fraction is kept from the low end (perplexity
filtering), the high end, or the middle (both tails dropped). Which proxy scored a recipe is part of
its identity: the scorer's run id and the sha256 of its checkpoint enter the step's cache key, the
recipe's token cache key and the run id of every cell trained on the recipe (`scorer_identity`), so a
retrained scorer never serves a stale selection.

The scorer is named by a folder: a cell's folder (`<output_dir>/<sweep>/<run_id>`), or a sweep's
folder plus `proxy_size` (the one cell of that size in the sweep). It must be completed and trained
with `trainer.keep_checkpoints=true` (checkpoints are otherwise removed once a cell's record is
final). This module imports torch only inside `score_documents`: curation stays light to import.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from pathlib import Path

from proxyscale import record
from proxyscale.config import ConfigError
from proxyscale.data.sources import Document
from proxyscale.record import CKPT_RUN_ID

BANDS = ("low", "high", "middle")


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """A checkpoint's sha256, computed once per (path, size, mtime, inode) in a process."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_sha256(path: Path) -> str:
    st = os.stat(path)
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns, st.st_ino)


def _ckpt(cell: Path) -> Path:
    return cell / "checkpoints" / "last.ckpt"


def resolve(proxy: str, proxy_size: str | None = None, where: str = "select_by_proxy") -> tuple[Path, record.Record]:
    """The scorer's cell folder and record, or ConfigError (one line) naming what is wrong: the folder
    or its record is missing, the record is not completed, its checkpoint was not kept."""
    if proxy is None or str(proxy) in ("", "???"):
        raise ConfigError(f"{where}: proxy is not set (a scorer cell's folder, e.g. outputs/scorers/<run_id>, or a sweep folder with proxy_size)")
    folder = Path(os.path.expanduser(str(proxy)))
    if not folder.is_dir():
        raise ConfigError(f"{where}: proxy cell {folder} does not exist (train the scorer first, with trainer.keep_checkpoints=true)")
    if not (folder / record.RESULT).exists() and proxy_size is not None:
        cells = sorted(p for p in folder.iterdir() if (p / record.RESULT).exists() and _size(p) == str(proxy_size))
        if not cells:
            raise ConfigError(f"{where}: no cell of size {proxy_size!r} in sweep {folder} (train the scorer first, with trainer.keep_checkpoints=true)")
        if len(cells) > 1:
            names = ", ".join(p.name for p in cells[:4]) + (", ..." if len(cells) > 4 else "")
            raise ConfigError(f"{where}: {len(cells)} cells of size {proxy_size!r} in sweep {folder} ({names}); name one: proxy={folder}/<run_id>")
        folder = cells[0]
    try:
        rec = record.read(folder)
    except record.RecordError as exc:
        raise ConfigError(f"{where}: proxy cell {folder} has no readable record ({exc})") from None
    if proxy_size is not None and rec.size != str(proxy_size):
        raise ConfigError(f"{where}: proxy cell {folder} is of size {rec.size!r}, proxy_size says {proxy_size!r}")
    if rec.status != "completed":
        raise ConfigError(f"{where}: proxy cell {folder} is {rec.status}, not completed")
    if not _ckpt(folder).is_file():
        raise ConfigError(f"{where}: proxy cell {folder} kept no checkpoint ({_ckpt(folder)}); train the scorer with trainer.keep_checkpoints=true")
    return folder, rec


def _size(cell: Path) -> str | None:
    try:
        return record.read(cell).size
    except record.RecordError:
        return None


def scorer_identity(proxy: str, proxy_size: str | None = None, **_) -> dict:
    """What makes a scorer this scorer: its run id and the sha256 of its checkpoint. Enters the step's
    cache key, the recipe's and the run id of the cells trained on the selected recipe."""
    folder, rec = resolve(proxy, proxy_size)
    return {"scorer_run_id": rec.run_id, "scorer_checkpoint_sha256": checkpoint_sha256(_ckpt(folder))}


def check(proxy, keep_frac, band, max_tokens_per_doc, tokenizer: str, proxy_size=None, where: str = "select_by_proxy") -> None:
    """The step's pre-run checks (ConfigError, one line)."""
    try:
        frac = float(keep_frac)
    except (TypeError, ValueError):
        frac = math.nan
    if not 0 < frac <= 1:
        raise ConfigError(f"{where}: keep_frac must be in (0, 1], got {keep_frac!r}")
    if band not in BANDS:
        raise ConfigError(f"{where}: band must be low, high or middle, got {band!r}")
    if not isinstance(max_tokens_per_doc, int) or max_tokens_per_doc < 1:
        raise ConfigError(f"{where}: max_tokens_per_doc must be an integer >= 1, got {max_tokens_per_doc!r}")
    _, rec = resolve(proxy, proxy_size, where)
    if rec.tokenizer != tokenizer:
        raise ConfigError(f"{where}: proxy cell {rec.run_id} was trained with tokenizer {rec.tokenizer!r}, the recipe uses {tokenizer!r}")


def score_documents(
    docs: list[Document], cell: Path, rec: record.Record, max_tokens_per_doc: int = 512, batch_size: int = 16, expect_sha256: str | None = None
) -> list[float]:
    """Each document's mean per-token loss (nats) under the scorer: its first `max_tokens_per_doc`
    tokens after an EOS (as documents follow one another in a training pool), cut into windows of the
    scorer's sequence length. CPU, eval mode, no grad; windows of equal length are batched together.
    A document with no token scores +inf."""
    import io

    import torch
    import torch.nn.functional as F

    from proxyscale.config import attrs
    from proxyscale.data.tokenizer import Tokenizer
    from proxyscale.job.model import build

    raw = _ckpt(cell).read_bytes()
    if expect_sha256 is not None and hashlib.sha256(raw).hexdigest() != expect_sha256:
        raise ConfigError(f"select_by_proxy: proxy checkpoint {_ckpt(cell)} changed while the recipe was being built; rerun")
    state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get(CKPT_RUN_ID) != rec.run_id or "state_dict" not in state:
        raise ConfigError(f"select_by_proxy: {_ckpt(cell)} is not the checkpoint of cell {rec.run_id}")
    config = attrs(rec.config)
    tok = Tokenizer(rec.tokenizer)
    seq = int(config.trainer.seq_len)
    net = build(config.model, tok.vocab_size, seq)
    weights = {k[len("net.") :]: v for k, v in state["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(weights)
    net.eval()

    groups: dict[int, list[tuple[int, list[int]]]] = {}
    for i, d in enumerate(docs):
        ids = [tok.eos] + [int(t) for t in tok.encode(d.text)[:max_tokens_per_doc]]
        for s in range(0, len(ids) - 1, seq):
            w = ids[s : s + seq + 1]
            groups.setdefault(len(w), []).append((i, w))
    sums, counts = [0.0] * len(docs), [0] * len(docs)
    with torch.no_grad():
        for n, items in sorted(groups.items()):
            for b in range(0, len(items), batch_size):
                chunk = items[b : b + batch_size]
                x = torch.tensor([w for _, w in chunk], dtype=torch.long)
                logits = net(input_ids=x[:, :-1]).logits.float()
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction="none").view(len(chunk), n - 1).sum(1)
                for (i, _), v in zip(chunk, loss.tolist()):
                    sums[i] += v
                    counts[i] += n - 1
    return [s / c if c else math.inf for s, c in zip(sums, counts)]


def keep_band(docs: list[Document], losses: list[float], keep_frac: float, band: str) -> list[Document]:
    """round(keep_frac x N) documents (at least one) from the band of the ranked losses, in their
    input order: low = the lowest losses, high = the highest, middle = both tails dropped equally."""
    n = len(docs)
    k = min(n, max(1, int(round(float(keep_frac) * n))))
    ranked = sorted(range(n), key=lambda i: (losses[i], docs[i].id))
    start = {"low": 0, "high": n - k, "middle": (n - k) // 2}[band]
    kept = set(ranked[start : start + k])
    return [d for i, d in enumerate(docs) if i in kept]


def select_by_proxy(
    docs: list[Document],
    rng,
    proxy: str = "???",
    proxy_size: str | None = None,
    keep_frac: float = 0.5,
    band: str = "low",
    max_tokens_per_doc: int = 512,
    inputs: dict | None = None,
) -> list[Document]:
    """Keep `keep_frac` of the documents by their loss under a trained proxy cell (see the module
    docstring). `inputs` (the scorer's identity the cache key was made with) is filled in by the
    curation machinery, never written in a recipe."""
    cell, rec = resolve(proxy, proxy_size)
    losses = score_documents(docs, cell, rec, max_tokens_per_doc, expect_sha256=(inputs or {}).get("scorer_checkpoint_sha256"))
    return keep_band(docs, losses, keep_frac, band)
