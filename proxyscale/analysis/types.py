"""Typed results: one `Comparison` per proxy -> target pair. Its field metadata (label, format, doc)
drives the Markdown/HTML comparison table, the W&B comparison table and the report.json schema text,
so a figure is declared once. Extra statistics register at runtime (`register`) and travel the same way.

Adding a statistic touches two files: its function and `register(...)` call (compare.py), and, when it
also needs a dedicated typed field instead of the `stats` mapping, this file.
"""

from __future__ import annotations

import dataclasses
import types as pytypes
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from proxyscale.analysis.stats import format_p


def _num(v, nd: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _with_ci(key: str) -> Callable[[dict], str]:
    def fmt(c: dict) -> str:
        ci = c.get(key + "_ci")
        return _num(c.get(key)) + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")

    return fmt


def _regret(c: dict) -> str:
    rg = c.get("regret") or {}
    if not rg:
        return "n/a"
    picks = rg.get("top1_picks") or []
    s = (picks[0] if len(picks) == 1 else f"{len(picks)} tied") + f" +{rg['top1']:.3g}"
    return s + (f"; top-{rg['k']} +{rg['topk']:.3g}" if rg.get("k") else "")


def _abstain(c: dict) -> str:
    ab = c.get("abstain") or {}
    return _num(ab.get("decision_accuracy_confident")) + (f" ({ab.get('n_abstain')} abstain)" if ab else "")


def col(
    doc: str, label: str | None = None, fmt: Callable[[dict], str] | None = None, wandb: bool = False, default: Any = None, factory: Callable | None = None
):
    """A dataclass field with its schema doc, table label/format (None: not a table column) and W&B flag."""
    meta = {"doc": doc, "label": label, "fmt": fmt, "wandb": wandb}
    return field(default_factory=factory, metadata=meta) if factory else field(default=default, metadata=meta)


@dataclass
class Comparison:
    """One proxy size against one larger target size on one metric."""

    metric: str = col("eval set / metric name", "metric", lambda c: str(c["metric"]), wandb=True)
    proxy: str = col("proxy size (or baseline name)", "proxy", lambda c: str(c["proxy"]), wandb=True)
    target: str = col("target size", "target", lambda c: str(c["target"]), wandb=True)
    direction: str = col("'lower' or 'higher' is better for this metric")
    proxy_lr: Any = col("'tuned' (best LR per recipe) | a float | null (no LR given)", wandb=True)
    target_mode: Any = col("'tuned' (best LR per recipe) | 'fixed' (the stated standard LR) | null", wandb=True)
    n_recipes: int = col("recipes present at both sizes", "recipes", lambda c: str(c["n_recipes"]), wandb=True, default=0)
    recipes: list = col("their names", factory=list)
    proxy_values: dict = col("{recipe: seed-mean value} at the proxy (tuned: best seed-mean over LRs)", factory=dict)
    target_values: dict = col("{recipe: seed-mean value} at the target", factory=dict)
    pearson: float | None = col("Pearson r of the values", "Pearson r [95% CI]", _with_ci("pearson"), wandb=True)
    pearson_ci: list | None = col("[lo, hi]: Fisher z, se 1/sqrt(n-3), widened by the seed-noise variance")
    r2: float | None = col("R^2 = r^2", "R²", lambda c: _num(c.get("r2")), wandb=True)
    r2_ci: list | None = col("the Pearson CI squared (0 when it spans 0)")
    spearman: float | None = col("Spearman rho (ties within the tolerance share ranks)", "Spearman ρ", _with_ci("spearman"), wandb=True)
    spearman_ci: list | None = col("[lo, hi]: Kendall's interval mapped through the Gaussian copula, widened to contain the estimate")
    kendall: float | None = col("Kendall tau-b", "Kendall τ-b", _with_ci("kendall"), wandb=True)
    kendall_ci: list | None = col(
        "[lo, hi]: every tau not rejected by |t - tau| <= 1.96 sd(tau; n) (Gaussian-copula variance of Kendall's statistic + seed noise); "
        "never zero-width, contains the estimate"
    )
    decision_accuracy: float | None = col(
        "fraction of untied recipe pairs ordered alike at both sizes", "decision acc.", _with_ci("decision_accuracy"), wandb=True
    )
    decision_accuracy_ci: list | None = col("[lo, hi]: (1 + the Kendall-type interval of gamma = 2 DA - 1, over untied pairs) / 2; never zero-width")
    p_value: float | None = col(
        "one-sided p of 'the proxy orders recipes like the target' (Kendall S)",
        "p (rank test)",
        lambda c: "n/a" if c.get("p_value") is None else format_p(c["p_value"], c.get("p_floor"))[2:],
        wandb=True,
    )
    p_floor: float | None = col("the smallest p the test can give (Monte Carlo: 1/(1+permutations)); p at the floor prints as 'p < floor'")
    test: str | None = col("how p_value was computed: exact, exhaustive permutation, Monte Carlo permutation or asymptotic")
    ci_method: dict | None = col("{noise sources in the intervals, seed replicates, tie rule}")
    fit: dict | None = col("{slope, intercept} of target ~ proxy")
    n_pairs: int = col("untied recipe pairs", wandb=True, default=0)
    n_ties: int = col("pairs tied at either size (excluded)", wandb=True, default=0)
    n_flips: int = col("untied pairs ordered oppositely", "flips/pairs", lambda c: f"{c['n_flips']}/{c['n_pairs']} ({c['n_ties']} ties)", wandb=True, default=0)
    flips: list = col("[{a, b, proxy_a, proxy_b, target_a, target_b, proxy_prefers, target_prefers}], largest target gap first", factory=list)
    flips_truncated: bool = col("more flips than listed", default=False)
    regret: dict | None = col(
        "{best_targets, top1_picks (the proxy's tied best), top1 (worst regret over them), top1_mean, "
        "top1_target_rank, k, topk, topk_picks}; target units, >= 0",
        "regret (top-1; top-k)",
        _regret,
    )
    abstain: dict | None = col(
        "pairs within proxy seed noise: {n_abstain, n_pairs_confident, decision_accuracy_confident, decision_accuracy_all, proxy_seed_sd, rule}",
        "DA w/o abstain",
        _abstain,
    )
    target_noise: dict | None = col(
        "pairs the target itself resolves: {target_seed_sd, n_resolvable, frac_resolvable, median_gap, rule} | null without target seeds"
    )
    attenuation: dict | None = col(
        "seed noise pulls agreement toward chance: {reliability_proxy, reliability_target, decision_accuracy_noise_free, rule} | null without seeds"
    )
    undertrained: list | None = col("per-LR entries: proxy cells worse than the bigram [{recipe, seed, loss, bigram}]")
    stats: dict = col("registered extra statistics {name: value} (also flattened to top-level keys)", factory=dict)
    undefined: dict = col("{figure: reason} for every figure that could not be computed", factory=dict)
    reason: str | None = col("all reasons joined | null", "undefined", lambda c: c.get("reason") or "", wandb=True)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d.update(self.stats)
        return d


@dataclass(frozen=True)
class Statistic:
    """An extra point statistic of (proxy values, target values) -> float | None, shown like a field."""

    name: str
    fn: Callable[[Any, Any], float | None]
    label: str
    doc: str
    nd: int = 3


STATISTICS: dict[str, Statistic] = {}


def register(stat: Statistic) -> Statistic:
    STATISTICS[stat.name] = stat
    return stat


def unregister(name: str) -> None:
    STATISTICS.pop(name, None)


def table_columns() -> list[tuple[str, Callable[[dict], str]]]:
    """(label, formatter of a report.json comparison) for the Markdown/HTML table, in field order."""
    cols = [(f.metadata["label"], f.metadata["fmt"]) for f in dataclasses.fields(Comparison) if f.metadata.get("label")]
    extra = [(s.label, (lambda c, s=s: _num(c.get(s.name), s.nd))) for s in STATISTICS.values()]
    return cols[:-1] + extra + cols[-1:]  # "undefined" stays last


def wandb_columns() -> list[str]:
    cols = [f.name for f in dataclasses.fields(Comparison) if f.metadata.get("wandb")]
    return cols[:-1] + list(STATISTICS) + cols[-1:]


def schema_doc() -> str:
    """The comparisons section of the report.json schema, from the field docs."""
    lines = [f"  {f.name}: {f.metadata['doc']}" for f in dataclasses.fields(Comparison)]
    lines += [f"  {s.name}: {s.doc} (registered statistic)" for s in STATISTICS.values()]
    return "\n".join(lines)


def doc(text: str, default: Any = None, factory: Callable | None = None):
    """A field of a typed report section with its schema doc (`proxyscale report --schema` prints it)."""
    return field(default_factory=factory, metadata={"doc": text}) if factory else field(default=default, metadata={"doc": text})


def typed(cls, data: Any):
    """`data` (the dict a builder assembled) as dataclass `cls`, nested sections included. A key the dataclass does not
    declare is an error, so report.json carries exactly the declared, documented keys (`dataclasses.asdict` of it)."""
    if dataclasses.is_dataclass(data):
        return data
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    extra = set(data) - names
    if extra:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(extra)}")
    return cls(**{k: _typed_value(hints[k], v) for k, v in data.items()})


def _typed_value(tp, v):
    if v is None:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, pytypes.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _typed_value(inner[0], v) if len(inner) == 1 else v
    if origin is list and args and dataclasses.is_dataclass(args[0]):
        return [typed(args[0], x) for x in v]
    if dataclasses.is_dataclass(tp):
        return typed(tp, v)
    return v
