"""`proxyscale collect`: records -> one tidy table, `results.parquet` (a row per cell x eval set x metric: `metric`
is loss for language-modelling sets, acc / prob_correct / ll_norm for benchmark task sets, `value` its number,
`higher_is_better` its direction, `loss` the value of loss rows (NaN for task rows), with the eval set's
null-baseline losses) and `curves.parquet` (a row per cell x eval set x eval step,
for early-signal analysis). Reads records only, through `record.parse`. With them, `examples.parquet`
(a row per completed cell x eval set x example: the per-example losses of issue 16, gathered from the
cells' own examples.parquet files one at a time) and its note `examples.json`.

Unreadable records (corrupt, truncated, another schema) are reported with their path and skipped;
the cells named in grid.json but without a record are counted as missing.
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from proxyscale import record
from proxyscale.errors import UserError

log = logging.getLogger("proxyscale")

RESULTS = "results.parquet"
CURVES = "curves.parquet"
CELL_COLUMNS = [
    "run_id",
    "sweep",
    "status",
    "size",
    "params",
    "recipe",
    "lr",
    "seed",
    "tokens",
    "steps",
    "wall_seconds",
    "train_seconds",
    "eval_seconds",
    "tokens_per_second",
    "flops_per_token",
]


class CollectError(UserError):
    """No sweep, or nothing readable in it; the one line the CLI prints."""


@dataclass
class Collected:
    """What `collect` read: the two tables `write` saves, the manifest `is_stale` compares against, and the summary."""

    results: pd.DataFrame
    curves: pd.DataFrame
    manifest: dict
    summary: str


def collect(sweep_dir: str | Path, workers: int | None = None, all_records: bool = False) -> Collected:
    """Read every record under a sweep folder into a Collected (results, curves, manifest, one-paragraph summary).

    Only records whose run id is in the sweep's current grid.json are used (`all_records`: every
    consistent record); the others are listed by path with a note, never averaged in. A record whose
    fields (run_id, sweep, size, recipe, lr, seed) disagree with its config, whose run id does not
    match its config, or that comes from another sweep is rejected with its path.
    Records are parsed by `workers` processes (default: one per core and per PER_WORKER records):
    JSON decoding is most of the cost, ~0.1 ms per record."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise CollectError(f"no sweep folder at {root}")
    manifest = _scan(root)
    grid_cells, sweep = read_grid(root)
    paths = sorted(os.path.join(root, p) for p in manifest["records"])
    if workers is None:
        workers = min(os.cpu_count() or 1, max(1, len(paths) // PER_WORKER))
    read = functools.partial(_read_rows, sweep=sweep)
    if workers > 1:
        k = -(-len(paths) // workers)
        chunks = [paths[i : i + k] for i in range(0, len(paths), k)]  # contiguous: rows keep the folders' order
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            parts = list(pool.map(read, chunks))
    else:
        parts = [read(paths)]
    bad = [b for part in parts for b in part[2]]
    rejected = [b for part in parts for b in part[3]]
    for b in bad + rejected:
        log.warning(f"skipping {b}")
    df = pd.concat([part[0] for part in parts], ignore_index=True)
    curves = pd.concat([part[1] for part in parts], ignore_index=True)
    outside: list[str] = []
    if grid_cells is not None and not df.empty:
        keep = df["run_id"].isin(grid_cells)
        outside = sorted(set(df.loc[~keep, "run_id"]))
        for rid in outside:
            log.warning(f"not in the current grid.json, left out: {root / rid / record.RESULT}" + (" (kept: --all-records)" if all_records else ""))
        if not all_records:
            df = df[keep].reset_index(drop=True)
            curves = curves[curves["run_id"].isin(grid_cells)].reset_index(drop=True)
    if df.empty:
        what = [f"{len(bad)} unreadable" if bad else "", f"{len(rejected)} rejected" if rejected else "", f"{len(outside)} not in grid.json" if outside else ""]
        detail = ", ".join(w for w in what if w)
        raise CollectError(f"no readable records under {root}" + (f" ({detail})" if detail else ""))
    return Collected(df, curves, manifest, _summary(root, df, bad, rejected, outside, grid_cells, all_records))


PER_WORKER = 2000  # records below which another process costs more than it saves
CURVE_COLUMNS = ["run_id", "size", "params", "recipe", "lr", "seed", "eval_set", "step", "tokens", "loss"]


def check_record(rec: record.Record, path: str | Path, sweep: str | None) -> str | None:
    """Why a parsed record must not be used (its path first), or None: its folder, fields and run id
    must agree with its config, and it must belong to `sweep` (when known)."""
    from proxyscale.config import run_id_of

    folder = Path(path).parent.name
    if rec.run_id != folder:
        return f"{path}: run id {rec.run_id!r} is not its folder's name {folder!r}"
    c = rec.config
    try:
        stated = {"sweep": c["sweep"], "size": c["model"]["name"], "recipe": c["data"]["name"], "lr": float(c["optim"]["lr"]), "seed": int(c["seed"])}
    except (KeyError, TypeError, ValueError):
        return f"{path}: its config lacks sweep, model.name, data.name, optim.lr or seed"
    wrong = [f"{k} {getattr(rec, k)!r} vs {v!r}" for k, v in stated.items() if getattr(rec, k) != v]
    if wrong:
        return f"{path}: fields disagree with its config ({', '.join(wrong)})"
    if sweep is not None and rec.sweep != sweep:
        return f"{path}: a record of sweep {rec.sweep!r}, not {sweep!r}"
    env = rec.extra.get("identity_env") if isinstance(rec.extra, dict) else None
    try:
        expected = run_id_of(c, env)
        earlier = run_id_of(c, env, placement=True)  # a multi-process cell recorded before placement left the run id
    except (KeyError, TypeError, ValueError):
        expected = earlier = None
    if rec.run_id not in (expected, earlier):
        return f"{path}: run id {rec.run_id!r} does not match its config ({expected})"
    return None


SUBSET_COLUMNS = ("subset", "subset_groups", "subset_members")


def _subset_columns(data: dict) -> tuple[int, int, str]:
    """(subset index or -1, number of groups or 0, the kept groups space-separated or "") of a record's recipe."""
    from proxyscale.config import subset_members

    members = subset_members(data)
    if members is None:
        return -1, 0, ""
    return int(data["subset"]) if data.get("subset") is not None else -1, int(data.get("subset_groups") or 64), " ".join(map(str, members))


def _read_rows(paths: list[str], sweep: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """(results rows, curve rows, unreadable-record messages, rejected-record messages) of these
    result.json paths; a cell folder without a record yet is skipped silently. Built column-wise (a
    cell's columns repeated over its eval sets and curve points): a row-wise build cost as much as the JSON."""
    cells, n_final, finals, n_curve, curve, bad, rejected, extra = [], [], [], [], [], [], [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            bad.append(f"{path}: unreadable ({type(exc).__name__}: {exc})")
            continue
        try:
            rec = record.parse(text, path)
        except record.RecordError as exc:
            bad.append(str(exc))
            continue
        problem = check_record(rec, path, sweep)
        if problem:
            rejected.append(problem)
            continue
        cells.append(tuple(getattr(rec, c) for c in CELL_COLUMNS))
        extra.append(
            (
                (rec.config.get("model") or {}).get("parametrization") or "standard",
                rec.examples_file or "",
                int((rec.config.get("trainer") or {}).get("seq_len") or 0),
                *_subset_columns(rec.config.get("data") or {}),
            )
        )
        sets = rec.final_loss or ({} if rec.final_metrics else dict.fromkeys([s for s in rec.eval_sets] or ["(none)"]))
        keys = (rec.cache_keys or {}).get("eval") or {}
        rows = [(name, "loss", loss, False, rec.baselines.get(name, {}), keys.get(name)) for name, loss in sets.items()]
        rows += [(name, m, v, True, {}, keys.get(name)) for name, ms in (rec.final_metrics or {}).items() for m, v in ms.items()]
        finals.extend(rows)
        n_final.append(len(rows))
        n = len(curve)
        for point in rec.eval_curve:
            step, tokens = point["step"], point["tokens"]
            curve.extend((name, step, tokens, loss) for name, loss in point["loss"].items())
        n_curve.append(len(curve) - n)
    cell = pd.DataFrame.from_records(cells, columns=CELL_COLUMNS)
    # parametrization: standard | mup (the report says which each size used); examples_file and seq_len (with each
    # row's eval_cache_key) let gather_examples find and match the per-example files without reading records again
    # subset, subset_groups, subset_members: a subset sweep's cell (datamodels: proxyscale/analysis/datamodels.py)
    for i, name in enumerate(("parametrization", "examples_file", "seq_len", *SUBSET_COLUMNS)):
        cell[name] = [e[i] for e in extra]
    if len(cell) and (cell["subset"] >= 0).any():  # each subset is its own training set: the report ranks them as recipes
        sub = cell["subset"] >= 0
        cell.loc[sub, "recipe"] = cell.loc[sub, "recipe"] + "-sub" + cell.loc[sub, "subset"].astype(str)
    results = cell.loc[cell.index.repeat(n_final)].reset_index(drop=True)
    results["eval_set"] = [r[0] for r in finals]
    values = np.array([r[2] for r in finals], dtype=float)  # None (no final value) -> NaN
    is_loss = np.array([r[1] == "loss" for r in finals], dtype=bool)
    results["loss"] = np.where(is_loss, values, np.nan)
    for kind in ("unigram", "bigram"):  # the recipe pool's count models on this eval set (NaN: not in the record)
        results[kind] = np.array([r[4].get(kind) for r in finals], dtype=float)
    results["metric"] = [r[1] for r in finals]
    results["value"] = values
    results["higher_is_better"] = np.array([r[3] for r in finals], dtype=bool)
    results["eval_cache_key"] = [r[5] for r in finals]
    curves = cell.loc[cell.index.repeat(n_curve), CURVE_COLUMNS[:6]].reset_index(drop=True)
    names, steps, tokens, losses = zip(*curve) if curve else ((), (), (), ())
    curves["eval_set"], curves["step"] = list(names), np.array(steps, dtype=np.int64)
    curves["tokens"], curves["loss"] = np.array(tokens, dtype=np.int64), np.array(losses, dtype=float)
    return results, curves, bad, rejected


def read_grid_doc(root: Path) -> dict | None:
    """The sweep's grid.json as a dict; None without one, or with a corrupt one (a warning: the next sweep run rebuilds it)."""
    path = root / record.GRID
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        cells = doc["cells"]
        if not isinstance(cells, dict):
            raise TypeError(f"cells is a {type(cells).__name__}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning(f"{path}: unreadable ({type(exc).__name__}: {str(exc)[:120]}); every record is used (rerun the sweep to rebuild it)")
        return None
    return doc


def read_grid(root: Path) -> tuple[set[str] | None, str | None]:
    """(run ids of the sweep's current grid, its sweep name) from grid.json; (None, None) without a readable one."""
    doc = read_grid_doc(root)
    return (None, None) if doc is None else (set(doc["cells"]), str(doc.get("sweep") or root.name))


def expected_cells(root: Path) -> set[str]:
    return read_grid(root)[0] or set()


def _summary(root: Path, df: pd.DataFrame, bad: list[str], rejected: list[str], outside: list[str], expected: set[str] | None, all_records: bool) -> str:
    cells = df.drop_duplicates("run_id")
    counts = cells["status"].value_counts().to_dict()
    parts = [f"{len(cells)} records: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    if expected:
        missing = expected - set(cells["run_id"])
        parts.append(f"{len(missing)} of {len(expected)} grid cells missing" if missing else f"all {len(expected)} grid cells present")
    if outside:
        parts.append(
            f"{len(outside)} record(s) not in the current grid.json "
            + ("included (--all-records)" if all_records else "left out (superseded or from elsewhere; --all-records to include)")
        )
    if bad:
        parts.append(f"{len(bad)} unreadable record(s) skipped")
    if rejected:
        parts.append(f"{len(rejected)} inconsistent record(s) rejected")
    return "; ".join(parts)


MANIFEST_KEY = b"proxyscale.manifest"  # results.parquet's metadata: the record paths, sizes, mtimes it was collected from
OLD_MANIFEST = ".results.manifest.json"  # where an older proxyscale kept it (a hidden file a copy of sweep/* loses): removed


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _scan(root: Path) -> dict:
    """Every record file of a sweep (relative path -> [size, mtime_ns, inode]) and grid.json's."""
    records = {}
    with os.scandir(root) as entries:
        for e in entries:
            if e.is_dir():
                st = _stat(os.path.join(e.path, record.RESULT))
                if st is not None:
                    records[f"{e.name}/{record.RESULT}"] = st
    return {"records": dict(sorted(records.items())), "grid": _stat(str(root / record.GRID))}


def _parquet_ok(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(-4, os.SEEK_END)
            return head == b"PAR1" and f.read(4) == b"PAR1"
    except OSError:
        return False


def is_stale(root: str | Path, out: str | Path | None = None) -> bool:
    """Whether results.parquet (in `out`, default the sweep folder) must be collected again: it is
    missing or unreadable (a warning), or a record or grid.json was added, removed or changed since
    it was collected (by the manifest inside the table's metadata: paths, sizes, mtimes in ns, inodes; it travels
    with the table, so a copied sweep is collected again once). A table without one (from elsewhere, or an older
    proxyscale): any record newer than the table."""
    import pyarrow.parquet as pq

    root, where = Path(root), Path(out or root)
    for line in record.recover_sets(where, "results"):
        log.warning(line)
    results = where / RESULTS
    if not results.exists():
        return True
    if not _parquet_ok(results) or ((where / CURVES).exists() and not _parquet_ok(where / CURVES)):
        log.warning(f"{results}: unreadable; collecting again")
        return True
    try:
        manifest = json.loads((pq.read_schema(results).metadata or {})[MANIFEST_KEY])
    except KeyError:
        newest = max((p.stat().st_mtime_ns for p in root.glob(f"*/{record.RESULT}")), default=0)
        return newest > results.stat().st_mtime_ns
    except (OSError, ValueError):
        return True
    return manifest != _scan(root)


def _write_parquet(frame: pd.DataFrame, path: Path, manifest: dict | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if manifest is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), MANIFEST_KEY: json.dumps(manifest).encode()})
    pq.write_table(table, path)


def write(collected: Collected, sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the tables (results.parquet with its manifest inside, curves.parquet, examples.parquet and examples.json)
    next to the records or in `out` (a read-only sweep can be collected elsewhere), as one set: staged beside them and
    published together (record.publish_set), so a failed or interrupted collect leaves the previous tables whole."""
    where = Path(out or sweep_dir)
    fail = lambda exc: CollectError(f"tables not written: {exc.strerror or exc}; the previous tables in {where}, if any, are intact")
    with record.staged(where, "results", fail) as stage:
        _write_parquet(collected.curves, stage / CURVES)
        _write_parquet(collected.results, stage / RESULTS, collected.manifest)
        gather_examples(Path(sweep_dir), collected.results, stage)
    stale = [n for n in (EXAMPLES, EXAMPLES_NOTE) if not (stage / n).exists()] + [OLD_MANIFEST]
    record.publish_set(where, stage, "results", [EXAMPLES_NOTE, EXAMPLES, CURVES, RESULTS], remove=stale)
    return where / RESULTS


# ---------------------------------------------------------------------------------------------
# per-example losses (issue 16)

EXAMPLES = "examples.parquet"  # the sweep's per-example table
EXAMPLES_NOTE = "examples.json"  # beside it: per eval set its eval cache key, seq_len, example count and snippet file; cells left out
EXAMPLE_COLUMNS = [
    "run_id",
    "size",
    "recipe",
    "lr",
    "seed",
    "eval_set",
    "example",
    "loss",
    "metric",
    "value",
]  # value: task metrics (NaN on loss rows; loss: NaN on task rows)
ROW_GROUP = 1 << 16  # rows buffered before a row group is written: memory stays bounded whatever the sweep's size


def _examples_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("run_id", pa.string()),
            ("size", pa.string()),
            ("recipe", pa.string()),
            ("lr", pa.float64()),
            ("seed", pa.int64()),
            ("eval_set", pa.string()),
            ("example", pa.int32()),
            ("loss", pa.float32()),
            ("metric", pa.string()),
            ("value", pa.float32()),
        ]
    )


EXAMPLE_COLUMNS_OF_RESULTS = ("examples_file", "seq_len", "eval_cache_key")  # what gather_examples reads of results.parquet


def gather_examples(root: Path, df: pd.DataFrame, where: Path) -> Path | None:
    """The completed cells' per-example files (the examples_file column of `df`, the results table, which also
    gives each cell's seq_len and each eval set's cache key) -> `where/examples.parquet`,
    appended a cell at a time through one ParquetWriter (row groups of ROW_GROUP rows), written to a temp
    file and renamed. Example i of an eval set is the same text only for cells with the same eval cache key
    and seq_len: the first cell (in run-id order) fixes them per eval set; a cell that disagrees is left out of
    that eval set with a warning, as is a cell whose file is missing or unreadable. No cell with a file: no
    table (a stale one is removed). Returns the table's path or None."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out, note_path = where / EXAMPLES, where / EXAMPLES_NOTE
    lacking = [c for c in EXAMPLE_COLUMNS_OF_RESULTS if c not in df.columns]
    if lacking:
        log.warning(f"per-example losses: results.parquet lacks {', '.join(lacking)} (an older proxyscale collected it); run `proxyscale collect` again")
        return None
    with_files = df[(df["status"] == "completed") & (df["examples_file"] != "")] if not df.empty else df
    cells = {rid: rows for rid, rows in with_files.groupby("run_id", sort=True)}
    sets: dict[str, dict] = {}
    left_out: list[str] = []
    tmp = record.temp_name(out)
    writer = None
    buf: list[pa.Table] = []
    n_buf = n_rows = n_cells = 0
    schema = _examples_schema()
    try:
        for rid, rows in cells.items():
            first = rows.iloc[0]
            keys = dict(zip(rows["eval_set"], rows["eval_cache_key"]))
            path = root / rid / first["examples_file"]
            try:
                t = pq.read_table(path)
                t = t.select([c for c in ("eval_set", "example", "loss", "metric", "value") if c in t.column_names])
                if "metric" not in t.column_names:  # a cell without task sets: every row is a loss
                    t = t.append_column("metric", pa.array(["loss"] * len(t), pa.string())).append_column("value", pa.nulls(len(t), pa.float32()))
            except Exception as exc:  # missing, truncated, another format
                left_out.append(f"{path}: unreadable ({type(exc).__name__}: {str(exc)[:120]})")
                continue
            names = np.asarray(t.column("eval_set").cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)
            examples = t.column("example").to_numpy()
            keep = np.ones(len(names), dtype=bool)
            seq_len = int(first["seq_len"])
            for name in dict.fromkeys(names):
                ident = {"eval_cache_key": keys.get(name), "seq_len": seq_len}
                rows = names == name
                n_ex = int(np.unique(examples[rows]).size)
                ref = sets.setdefault(name, {**ident, "n_examples": n_ex, "cells": 0})
                if {k: ref[k] for k in ident} != ident or ref["n_examples"] != n_ex:
                    keep &= ~rows
                    left_out.append(
                        f"{path}: eval set {name!r} with cache key {ident['eval_cache_key']} and seq_len {seq_len} "
                        f"({n_ex} examples), not those of the first cell ({ref['eval_cache_key']}, {ref['seq_len']}, "
                        f"{ref['n_examples']}): its examples are other text, left out"
                    )
                else:
                    ref["cells"] += 1
            n = int(keep.sum())
            if not n:
                continue
            part = pa.table(
                {
                    "run_id": pa.array([rid] * n, pa.string()),
                    "size": pa.array([first["size"]] * n, pa.string()),
                    "recipe": pa.array([first["recipe"]] * n, pa.string()),
                    "lr": np.full(n, float(first["lr"])),
                    "seed": np.full(n, int(first["seed"]), dtype=np.int64),
                    "eval_set": pa.array(names[keep].tolist(), pa.string()),
                    "example": t.column("example").to_numpy().astype(np.int32)[keep],
                    "loss": t.column("loss").to_numpy(zero_copy_only=False).astype(np.float32)[keep],
                    "metric": pa.array(
                        np.asarray(t.column("metric").cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)[keep].tolist(), pa.string()
                    ),
                    "value": t.column("value").to_numpy(zero_copy_only=False).astype(np.float32)[keep],
                },
                schema=schema,
            )
            buf.append(part)
            n_buf, n_rows, n_cells = n_buf + n, n_rows + n, n_cells + 1
            if n_buf >= ROW_GROUP:
                writer = writer or pq.ParquetWriter(tmp, schema, compression="zstd")
                writer.write_table(pa.concat_tables(buf), row_group_size=ROW_GROUP)
                buf, n_buf = [], 0
        for msg in left_out:
            log.warning(f"per-example losses: {msg}")
        if not n_rows:
            for p in (out, note_path):
                p.unlink(missing_ok=True)
            return None
        writer = writer or pq.ParquetWriter(tmp, schema, compression="zstd")
        if buf:
            writer.write_table(pa.concat_tables(buf), row_group_size=ROW_GROUP)
        writer.close()
        writer = None
        os.chmod(tmp, 0o666 & ~record.umask())
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    for name, ref in sets.items():
        ref["snippets"] = f"{record.SNIPPETS}/{name}-{ref['eval_cache_key']}-L{ref['seq_len']}.json"
    record.atomic_write_text(note_path, json.dumps({"rows": n_rows, "cells": n_cells, "eval_sets": sets, "left_out": left_out}, indent=1))
    return out
