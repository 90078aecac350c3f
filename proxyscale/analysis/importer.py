"""Import external results (a long CSV) so that the analysis sees exactly the data given.

Columns: recipe, size, metric, value (required); lr, seed, step, params, tokens, flops, direction (optional).
tokens (training tokens seen by that row's step, or by the run) and flops (training FLOPs) feed the compute
axis of the predictions, the frontier and the planner; without them compute assumes 20 tokens per parameter.
Any other column is ignored, and a note says so. Every refusal is an `AnalysisError` whose message
is the one line the CLI prints (exit 2); anything the importer changes or excludes is a sentence in
the returned notes. The rules, and why:

- Names are text. recipe, size and metric are read as the strings written, with surrounding
  whitespace stripped and nothing else: "001", "1" and "1.0" are three recipes (a number parse
  would merge them) and "None", "NA", "null" are names like any other (pandas would read them as
  missing). Only an empty or whitespace-only cell is empty, and that is refused with its row.
- Numbers are checked per cell. value, lr, seed, step and params must parse as numbers; the first
  bad cell is refused with its row (row 2 is the first line after the header). value must be
  present and finite: a NaN or inf would be dropped or ranked arbitrarily later. lr, seed, step
  and params may be empty (or a pandas missing marker like NA) meaning "not given"; inf is refused.
- Sizes are ordered by parameter count: the params column when it gives a value for every size,
  else the number in the name (.5B, 0.5B, 1.5B, 400M, 400M-1x, 7B, 350k, 1T; suffixes k, M, B, T).
  Two sizes with the same count are refused: their order would be a guess.
- Steps: with a step column, the full table (every step) is returned, since the caller takes each
  run's last step as its final value and earlier steps as its early signal. So every run must end
  at the same step as the other runs of its size (sizes may differ from each other): a run that
  stopped early would otherwise be compared at step 50 with others at step 100. Short runs are
  refused, or with allow_short_runs=True excluded entirely (every step), with a note naming them;
  never mixed in. A row with an empty step when other rows have one is refused (it is neither a
  final value nor a point on a curve for sure); a step column empty in every row is ignored.
- Direction is per metric: lower is better (losses) unless the metric is named by
  higher_is_better (a collection of metric names, i.e. ``--higher-is-better METRIC...``; True
  keeps the legacy "every metric") or by a direction column (higher/lower, any case; an empty cell
  says nothing). Unknown names, other words, and disagreements (within the column, or between the
  column and the argument) are refused: a silently flipped direction flips every verdict.
  A metric analysed as lower-is-better whose name reads like an accuracy or score gets a warning
  note, and one analysed as higher-is-better whose name reads like a loss gets one too. The
  name is split into words (at non-alphanumerics and lower->Upper case changes, so "loss" never
  matches "acc" and "val_acc" does) and a word in ACCURACY_WORDS (or one starting with "pass@")
  marks an accuracy; a word in LOSS_WORDS marks a loss and suppresses the accuracy warning.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd

REQUIRED = ("recipe", "size", "metric", "value")
OPTIONAL = ("lr", "seed", "step", "params", "tokens", "flops")
NAMES = ("recipe", "size", "metric")
RUN_KEYS = ("recipe", "size", "metric", "lr", "seed")

# Words that mark a metric as an accuracy / score (higher is better): generic score words, then
# common benchmarks that are always reported as accuracies, then DCLM's aggregate "Core".
ACCURACY_WORDS = frozenset(
    {
        "acc",
        "accuracy",
        "accuracies",
        "acc1",
        "acc5",
        "top1",
        "top5",
        "em",
        "exact",
        "f1",
        "score",
        "scores",
        "bleu",
        "rouge",
        "rougel",
        "chrf",
        "auc",
        "auroc",
        "precision",
        "recall",
        "winrate",
        "mmlu",
        "core",
        "hellaswag",
        "arc",
        "arc_e",
        "arc_c",
        "piqa",
        "siqa",
        "winogrande",
        "boolq",
        "openbookqa",
        "obqa",
        "triviaqa",
        "gsm8k",
        "humaneval",
        "mbpp",
        "lambada_acc",
        "copa",
        "commonsenseqa",
        "csqa",
    }
)
# Words that mark a loss (lower is better).
LOSS_WORDS = frozenset({"loss", "losses", "nll", "ppl", "perplexity", "bpb", "bpc", "bits", "ce", "xent", "entropy", "error", "err"})
# Text the optional numeric columns accept as "not given" (pandas' default missing markers).
_MISSING = frozenset({"", "#n/a", "#n/a n/a", "#na", "-1.#ind", "-1.#qnan", "-nan", "1.#ind", "1.#qnan", "<na>", "n/a", "na", "null", "nan", "none"})
_NAN_TEXT = frozenset({"nan", "-nan", "+nan"})
_SIZE_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmbt])", re.IGNORECASE)
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
_LIST = 5  # runs / names listed in one message before "and N more"


class AnalysisError(ValueError):
    """Input the analysis cannot use; the message is one line for the CLI."""


# ---------------------------------------------------------------------------------------------
# sizes


def parse_size(name: str) -> float | None:
    """Parameter count named by a size label: 350k, .5B, 1M, 60M, 400M-1x, 1.3B, 7B-1x, 1T -> float, else None."""
    m = _SIZE_RE.search(str(name))
    return float(m.group(1)) * _SUFFIX[m.group(2).lower()] if m else None


def order_sizes(sizes: Iterable[str], params: dict[str, float] | None = None) -> list[str]:
    """Sizes smallest first, by params when given for every size, else by the number in the name."""
    sizes = list(dict.fromkeys(str(s) for s in sizes))
    if params and all(s in params and params[s] == params[s] for s in sizes):
        key = {s: float(params[s]) for s in sizes}
    else:
        key = {s: parse_size(s) for s in sizes}
        bad = [s for s, v in key.items() if v is None]
        if bad:
            raise AnalysisError(f"cannot order sizes {', '.join(map(repr, bad))}: give a params column or names like 60M, 1.3B, 350k")
    values = sorted(key.values())
    if len(set(values)) < len(values):
        dup = sorted({s for s in sizes if values.count(key[s]) > 1})
        raise AnalysisError(f"cannot order sizes {', '.join(map(repr, dup))}: they have the same parameter count")
    return sorted(sizes, key=lambda s: key[s])


# ---------------------------------------------------------------------------------------------
# metric names


def _words(name: str) -> set[str]:
    """Lower-case words of a metric name, split at non-alphanumerics (keeping '@' and, as a second
    reading, '_') and at lower->Upper case changes: 'val_acc' -> {val, acc, val_acc}, 'HellaSwag' ->
    {hellaswag, hella, swag}, 'pass@1' -> {pass@1}."""
    out: set[str] = set()
    for part in re.findall(r"[A-Za-z0-9@_]+", str(name)):
        out.add(part.lower())
        for sub in part.split("_"):
            if sub:
                out.add(sub.lower())
                out.update(w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9@]+|[0-9@]+", sub))
    return out


def reads_like_loss(name: str) -> bool:
    """True when a word of the metric name is in LOSS_WORDS."""
    return bool(_words(name) & LOSS_WORDS)


def reads_like_accuracy(name: str) -> bool:
    """True when a word of the metric name is in ACCURACY_WORDS or starts with 'pass@', and none is a loss word."""
    words = _words(name)
    if words & LOSS_WORDS:
        return False
    return bool(words & ACCURACY_WORDS) or any(w.startswith("pass@") for w in words)


def _listed(items: list[str], n: int = _LIST) -> str:
    head = ", ".join(items[:n])
    return head + (f" and {len(items) - n} more" if len(items) > n else "")


# ---------------------------------------------------------------------------------------------
# the CSV


def _read(path: str) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except FileNotFoundError:
        raise AnalysisError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AnalysisError(f"{path}: is a folder, not a CSV file") from None
    except pd.errors.EmptyDataError:
        raise AnalysisError(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise AnalysisError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    return raw


def _numeric(path: str, df: pd.DataFrame, col: str, *, required: bool) -> pd.Series:
    """Column of text -> float; empty / missing markers -> NaN where allowed; one-line errors naming the row."""
    text = df[col].str.strip()
    low = text.str.lower()
    if required:
        empty = (text == "").to_numpy()
        if empty.any():
            raise AnalysisError(f"{path}: column {col} has empty values (row {int(empty.argmax()) + 2})")
        given = np.ones(len(text), dtype=bool)
    else:
        given = ~low.isin(_MISSING).to_numpy()
    num = pd.to_numeric(text.where(given), errors="coerce").astype(float).to_numpy()
    nan_text = low.isin(_NAN_TEXT).to_numpy()
    bad = np.isnan(num) & given & ~nan_text
    if bad.any():
        row = int(bad.argmax())
        raise AnalysisError(f"{path}: non-numeric {col} {df[col].iloc[row]!r} (row {row + 2})")
    bad = np.isinf(num) | (given & nan_text)
    if bad.any():
        row = int(bad.argmax())
        raise AnalysisError(f"{path}: non-finite {col} {df[col].iloc[row]!r} (row {row + 2})")
    return pd.Series(num, index=df.index)


def _run_label(run: tuple, keys: list[str]) -> str:
    d = dict(zip(keys, run))
    extra = [f"{k}={d[k]:g}" for k in ("lr", "seed") if k in d and d[k] == d[k]]
    return f"{d['recipe']} ({', '.join([d['metric'], *extra])})"


def _check_steps(path: str, df: pd.DataFrame, sizes: list[str], allow_short_runs: bool, notes: list[str]) -> pd.DataFrame:
    """Every run ends at its size's final step (the largest last step of any run at that size), or refuse / exclude."""
    keys = [k for k in RUN_KEYS if k in df.columns]
    last = df.groupby(keys, dropna=False, sort=False)["step"].transform("max").to_numpy()
    final = df.groupby("size", sort=False)["step"].max()
    short = last < final.reindex(df["size"]).to_numpy()
    if short.any():
        runs = df.loc[short, keys].assign(step=last[short]).drop_duplicates(keys)
        per = []  # (size, final step, "run at step" list)
        for size in sizes:
            at = runs[runs["size"] == size]
            if len(at):
                per.append((size, final[size], _listed([f"{_run_label(tuple(r[k] for k in keys), keys)} at {r['step']:g}" for _, r in at.iterrows()])))
        if not allow_short_runs:
            raise AnalysisError(f"{path}: " + "; ".join(f"runs stop short of step {f:g} at size {s}: {w}" for s, f, w in per))
        df = df[~short]
        notes.append(
            f"excluded {len(runs)} run(s) that stop short of their size's final step (allow_short_runs), every step of them: "
            + "; ".join(f"at size {s} (final step {f:g}): {w}" for s, f, w in per)
            + "."
        )
    notes.append("every run ends at the final step of its size (" + ", ".join(f"{s}: {final[s]:g}" for s in sizes) + ").")
    return df


def _directions(path: str, raw: pd.DataFrame, metrics: list[str], higher_is_better) -> dict[str, bool]:
    """{metric: higher_is_better} from the argument and the optional direction column; refusals as one line."""
    column: dict[str, bool] = {}
    if "direction" in raw.columns:
        text = raw["direction"].str.strip().str.lower()
        bad = ~text.isin(["higher", "lower", ""])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise AnalysisError(f"{path}: direction must be higher or lower, got {raw['direction'].iloc[row]!r} (row {row + 2})")
        given = pd.DataFrame({"metric": raw["metric"], "d": text, "row": np.arange(len(raw)) + 2})
        given = given[given["d"] != ""]
        for metric, g in given.groupby("metric", sort=False):
            if g["d"].nunique() > 1:
                first = g.drop_duplicates("d")
                raise AnalysisError(
                    f"{path}: metric {metric!r} has direction {first['d'].iloc[0]} (row {first['row'].iloc[0]}) "
                    f"and {first['d'].iloc[1]} (row {first['row'].iloc[1]})"
                )
            column[metric] = g["d"].iloc[0] == "higher"
    if higher_is_better is None or higher_is_better is False:
        named: set[str] = set()
    elif higher_is_better is True:
        named = set(metrics)
    else:
        names = [higher_is_better] if isinstance(higher_is_better, str) else list(higher_is_better)
        named = {str(n).strip() for n in names}
        unknown = sorted(named - set(metrics))
        if unknown:
            raise AnalysisError(
                f"{path}: --higher-is-better names metric(s) not in the file: {', '.join(map(repr, unknown))} (metrics: {_listed(metrics, 20)})"
            )
    clash = [m for m in metrics if m in named and column.get(m) is False]
    if clash:
        said = "(every metric) covers" if higher_is_better is True else "names"
        raise AnalysisError(f"{path}: --higher-is-better {said} {_listed([repr(m) for m in clash])} but the direction column says lower")
    return {m: (m in named) or column.get(m, False) for m in metrics}


class Imported(NamedTuple):
    """What prepare_csv read. `examples`: the per-example rows when the CSV has an example column (kept out of
    the table's attrs, which pandas deep-copies on every operation)."""

    table: pd.DataFrame
    sizes: list[str]
    directions: dict[str, bool]
    notes: list[str]
    examples: pd.DataFrame | None = None


def prepare_csv(path: str, higher_is_better=None, *, allow_short_runs: bool = False) -> Imported:
    """Read an external long CSV -> (long table, sizes smallest first, {metric: higher_is_better}, notes, examples).

    higher_is_better: None/False (lower for every metric unless the direction column says higher),
    True (every metric), or a collection of metric names that are higher-is-better.
    allow_short_runs: exclude (with a note) runs that end before their size's final step instead of refusing.
    The table has recipe, size, metric (str), value and whichever of lr, seed, step, params are given
    (float); with steps it holds every step. Raises AnalysisError (one line) on input it cannot use.
    """
    raw = _read(path)
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise AnalysisError(f"{path}: missing column(s) {', '.join(missing)} (need recipe,size,metric,value[,lr,seed,step,params,tokens,flops])")
    if raw.empty:
        raise AnalysisError(f"{path}: empty file (no rows)")
    notes: list[str] = []
    ignored = [c for c in raw.columns if c not in REQUIRED + OPTIONAL + ("direction", "example")]
    if ignored:
        known = "recipe,size,metric,value,lr,seed,step,params,tokens,flops,direction,example"
        notes.append(f"column(s) {', '.join(map(repr, ignored))} ignored (not one of {known}).")
    for c in NAMES:
        raw[c] = raw[c].str.strip()
        empty = (raw[c] == "").to_numpy()
        if empty.any():
            raise AnalysisError(f"{path}: column {c} has empty values (row {int(empty.argmax()) + 2})")
    df = raw[list(NAMES)].copy()
    for c in ("value",) + tuple(c for c in OPTIONAL if c in raw.columns):
        df[c] = _numeric(path, raw, c, required=c == "value")
        if c in ("tokens", "flops", "params"):
            bad = (df[c] <= 0).to_numpy()
            if bad.any():
                raise AnalysisError(f"{path}: column {c} must be positive (row {int(bad.argmax()) + 2}: {raw[c].iloc[int(bad.argmax())]!r})")
    metrics = list(dict.fromkeys(df["metric"]))
    directions = _directions(path, raw, metrics, higher_is_better)
    examples = None
    if "example" in raw.columns:
        df, examples = _examples(path, raw, df, notes)

    if "step" in df.columns:
        has = df["step"].notna().to_numpy()
        if not has.any():
            df = df.drop(columns="step")
            notes.append("the step column is empty in every row; ignored (every row is a final value).")
        elif not has.all():
            row = int(np.flatnonzero(~has)[0])
            raise AnalysisError(f"{path}: empty step (row {row + 2}) while other rows have steps; give every row its step")

    if df["recipe"].nunique() < 2:
        raise AnalysisError(f"{path}: only one recipe ({df['recipe'].iloc[0]!r}); a ranking needs at least 2")
    if df["size"].nunique() < 2:
        raise AnalysisError(f"{path}: only one size ({df['size'].iloc[0]!r}); a proxy and a target are needed")
    params = None
    if "params" in df.columns:
        per = df.groupby("size")["params"].agg(["min", "max"])
        two = ((per["min"] != per["max"]) & per["min"].notna()).to_numpy()
        if two.any():
            raise AnalysisError(f"{path}: size {per.index[two][0]!r} has more than one params value")
        params = per["min"].to_dict()
    sizes = order_sizes(df["size"].unique(), params)

    if "step" in df.columns:
        df = _check_steps(path, df, sizes, allow_short_runs, notes)
        if df["recipe"].nunique() < 2:
            raise AnalysisError(f"{path}: only one recipe left after excluding short runs; a ranking needs at least 2")
        if df["size"].nunique() < 2:
            raise AnalysisError(f"{path}: only one size left after excluding short runs; a proxy and a target are needed")
        sizes = [s for s in sizes if s in set(df["size"])]

    at = df.groupby("recipe")["size"].nunique()
    partial = sorted(at.index[at.to_numpy() < len(sizes)])
    if partial and len(partial) == len(at):
        notes.append("no recipe has values at two sizes, so no proxy-target comparison can be made.")
    elif partial:
        notes.append(
            f"{len(partial)} of {len(at)} recipe(s) lack values at some size ({_listed(partial)}); "
            "each comparison uses the recipes present at both of its sizes."
        )

    metrics = list(dict.fromkeys(df["metric"]))
    directions = {m: directions[m] for m in metrics}
    higher = [m for m in metrics if directions[m]]
    if higher and len(higher) == len(metrics):
        notes.append("every metric is analysed as higher-is-better.")
    elif higher:
        notes.append(f"higher is better for {', '.join(map(repr, higher))}; lower is better for the other {len(metrics) - len(higher)} metric(s).")
    for m in metrics:
        if not directions[m] and reads_like_accuracy(m):
            notes.append(
                f"metric {m!r} reads like an accuracy but is analysed as lower-is-better; pass --higher-is-better {shlex.quote(m)} or a direction column"
            )
        elif directions[m] and reads_like_loss(m):
            notes.append(f"metric {m!r} reads like a loss but is analysed as higher-is-better; check --higher-is-better and the direction column")
    return Imported(df.reset_index(drop=True), sizes, directions, notes, examples)


def _examples(path: str, raw: pd.DataFrame, df: pd.DataFrame, notes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An `example` column: each row is one example's value (metric = the eval set, value = that example's loss).
    Every run (recipe, size, metric[, lr, seed]) must have every example of its metric exactly once: the first gap or
    repeat is refused with its row. Returns (the table of per-run means over the examples, which the rest of the
    analysis ranks; the per-example rows for report.json's per_example)."""
    ex = raw["example"].str.strip()
    empty = (ex == "").to_numpy()
    if empty.any():
        raise AnalysisError(f"{path}: column example has empty values (row {int(empty.argmax()) + 2})")
    if "step" in df.columns and df["step"].notna().any():
        raise AnalysisError(f"{path}: an example column with a step column: give the per-example values of the final step only (no step column)")
    df = df.drop(columns="step", errors="ignore").assign(example=ex.to_numpy())
    keys = [k for k in RUN_KEYS if k in df.columns]
    key = df[keys].astype(str).agg("|".join, axis=1) if len(keys) > 1 else df[keys[0]].astype(str)
    dup = (key + "|" + df["example"]).duplicated().to_numpy()
    if dup.any():
        row = int(dup.argmax())
        raise AnalysisError(
            f"{path}: example {df['example'].iloc[row]!r} of {_run_label(tuple(df[k].iloc[row] for k in keys), keys)} "
            f"at size {df['size'].iloc[row]} appears twice (row {row + 2})"
        )
    for metric in dict.fromkeys(df["metric"]):
        sub = df[df["metric"] == metric]
        want = list(dict.fromkeys(sub["example"]))
        n = sub.groupby(key[sub.index], sort=False).size()
        short = n.index[n.to_numpy() < len(want)]
        if len(short):
            rows = sub[key[sub.index] == short[0]]
            have = set(rows["example"])
            miss = next(e for e in want if e not in have)
            r0 = rows.iloc[0]
            raise AnalysisError(
                f"{path}: gap: example {miss!r} of metric {metric!r} is missing for {_run_label(tuple(r0[k] for k in keys), keys)} "
                f"at size {r0['size']} (row {int(rows.index[0]) + 2} is that run's first); every run needs every example of its metric"
            )
    per = df.groupby(keys, sort=False, dropna=False)["value"].mean().reset_index()
    rest = [c for c in df.columns if c not in keys + ["value", "example"]]  # params
    if rest:
        per = per.merge(df.groupby(keys, sort=False, dropna=False)[rest].first().reset_index(), on=keys, how="left")
    counts = df.groupby("metric", sort=False)["example"].nunique()
    notes.append(
        "example column: each row is one example's value; recipes are ranked by each run's mean over its examples ("
        + ", ".join(f"{m}: {n}" for m, n in counts.items())
        + " examples); per_example uses the rows themselves."
    )
    return per[[c for c in df.columns if c != "example"]], df.reset_index(drop=True)
