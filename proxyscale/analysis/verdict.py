"""Verdicts (holds / fails / inconclusive, each with a reason), the per-metric summary and the bottom line.

Family-wise control: a bottom line makes one claim per (eval set, proxy size) against the target, m in
all. Each claim is judged on a simultaneous 95% interval of decision accuracy (Bonferroni: each interval at
level 1 - 0.05 / m, `stats.z_value`), so the chance that any "holds" or "fails" in a report is wrong is at
most 5% (tests/test_stats.py checks it by simulation).
holds: the simultaneous interval's lower end >= DA_BAR (the data support DA >= the bar), with at least
MIN_PAIRS untied pairs and, when the target has seeds, the target resolving most pairs beyond its own noise.
fails: the simultaneous interval's upper end < DA_BAR while the target resolves its pairs.
Everything else is inconclusive, with the remedy that can work: more seeds only when seed noise is most of
the interval's variance, else more recipes (with the count that would do it if DA stayed where it is).
The planner judges its points on the same bar against their (per-point) lower ends.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from proxyscale.analysis.stats import da_interval_counts, format_p, z_value
from proxyscale.analysis.types import doc

ALPHA = 0.05
DA_BAR = 0.8
MIN_PAIRS = 6
MIN_RESOLVABLE = 0.5
SEED_LIMITED = 0.5  # seed noise is "the limit" when it is at least this share of gamma's variance
RULE = (
    f"holds: the simultaneous 95% interval of decision accuracy (Bonferroni over the m eval set x proxy claims of this report) "
    f"lies at or above {DA_BAR}, with >= {MIN_PAIRS} untied pairs and the target resolving >= {MIN_RESOLVABLE:.0%} of pairs "
    f"beyond 2 x its seed noise (when it has seeds); fails: that interval lies below {DA_BAR} and the target resolves its pairs; "
    f"otherwise inconclusive. The chance that any holds/fails of one report is wrong is at most {ALPHA:.0%}."
)
ASSUMES_REAL = "no seed replicates at the target: the verdict assumes its differences are real"


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "(no interval)"


def target_blocker(c: dict) -> str | None:
    tn = c.get("target_noise")
    if not tn or tn.get("frac_resolvable") is None or tn["frac_resolvable"] >= MIN_RESOLVABLE:
        return None
    gap = f"the median recipe gap {tn['median_gap']:.2g}" if tn.get("median_gap") is not None else "most recipe gaps"
    return (
        f"add seeds at the target: its seed sd {tn['target_seed_sd']:.2g} ({tn['target_k']:g} seed(s) per recipe) swamps {gap}; "
        f"only {tn['frac_resolvable']:.0%} of pairs differ by more than 2 x the noise of a difference"
    )


def simultaneous_ci(c: dict, m: int) -> list[float] | None:
    """The DA interval of comparison c at the Bonferroni level of m simultaneous claims."""
    if not c.get("n_pairs"):
        return None
    var = (c.get("ci_method") or {}).get("seed_var_gamma", 0.0)
    return da_interval_counts(c["n_pairs"] - c["n_flips"], c["n_flips"], var, z_value(1 - ALPHA, m))


def recipes_needed(da: float, m: int, var: float = 0.0, cap: int = 5000) -> int | None:
    """Recipes at which a DA of `da` would clear DA_BAR at the simultaneous lower end (None: not below `cap`)."""
    if da <= DA_BAR:
        return None
    lo_n, hi_n = 3, cap
    if da_interval_counts(*_counts(da, hi_n), var, z_value(1 - ALPHA, m))[0] < DA_BAR:
        return None
    while hi_n - lo_n > 1:
        mid = (lo_n + hi_n) // 2
        if da_interval_counts(*_counts(da, mid), var, z_value(1 - ALPHA, m))[0] >= DA_BAR:
            hi_n = mid
        else:
            lo_n = mid
    return hi_n


def _counts(da: float, n: int) -> tuple[float, float]:
    pairs = n * (n - 1) / 2
    return da * pairs, (1 - da) * pairs


def _remedy(c: dict, m: int) -> str:
    """What would narrow the interval: seeds when seed noise is most of its variance, else recipes."""
    share = (c.get("ci_method") or {}).get("seed_share")
    if share is not None and share >= SEED_LIMITED:
        return f"add seeds (seed noise is {share:.0%} of the interval's variance)"
    n = recipes_needed(c["decision_accuracy"], m, (c.get("ci_method") or {}).get("seed_var_gamma", 0.0))
    seeds = "" if share is None else f"; seeds cannot help much (seed noise is {share:.0%} of its variance)"
    if n is not None:
        return f"add recipes (about {n} would clear {DA_BAR} if DA stayed at {c['decision_accuracy']:.2f}){seeds}"
    return f"add recipes{seeds}"


def verdict(c: dict, m: int = 1) -> tuple[str, str]:
    """(holds | fails | inconclusive, reason) of one comparison among m simultaneous claims (module doc)."""
    da, n = c.get("decision_accuracy"), c["n_recipes"]
    if da is None:
        return "inconclusive", f"decision accuracy undefined: {c.get('reason')}"
    sci = simultaneous_ci(c, m)
    tail = "" if c.get("target_noise") else f" ({ASSUMES_REAL})"
    blocked = target_blocker(c)
    label = "95% interval" if m == 1 else f"simultaneous 95% interval over {m} claims"
    figs = f"decision accuracy {da:.2f} {_ci(sci)} ({label})"
    if c.get("p_value") is not None:
        figs += f", rank test {format_p(c['p_value'], c.get('p_floor'))}"
    if sci and sci[1] < DA_BAR and not blocked and c["n_pairs"] >= MIN_PAIRS:
        return "fails", f"{figs}: below {DA_BAR} even at the top of its interval{tail}"
    why = []
    if n <= 3:
        why.append(f"{n} recipes cannot support a decision accuracy of {DA_BAR}: add recipes")
    elif c["n_pairs"] < MIN_PAIRS:
        why.append(f"only {c['n_pairs']} untied pair(s) (need {MIN_PAIRS}): add recipes")
    if blocked:
        why.append(blocked)
    if not why and sci and sci[0] < DA_BAR:
        if da < DA_BAR:
            why.append(f"decision accuracy {da:.2f} is below {DA_BAR} but its interval reaches it: {_remedy(c, m)}")
        else:
            why.append(f"the interval's lower end {sci[0]:.2f} is below {DA_BAR}: {_remedy(c, m)}")
    if why:
        return "inconclusive", f"{figs}; " + "; ".join(why) + tail
    return "holds", f"{figs}{tail}"


def sentence(c: dict) -> str:
    if c.get("decision_accuracy") is None:
        return f"the {c['proxy']} proxy vs the {c['target']} target on {c['metric']}: undefined ({c.get('reason')})."
    flips = c["n_flips"]
    s = (
        f"the {c['proxy']} proxy orders {c['decision_accuracy']:.0%} of the untied recipe pairs of these {c['n_recipes']} recipes as the "
        f"{c['target']} target does (decision accuracy {c['decision_accuracy']:.2f} {_ci(c['decision_accuracy_ci'])}, 0.5 = chance); "
        f"{flips} pair{'s' if flips != 1 else ''} flip"
        f"{'' if flips != 1 else 's'} of {c['n_pairs']}"
    )
    if c.get("spearman") is not None:
        s += f"; Spearman {c['spearman']:.2f} {_ci(c['spearman_ci'])}"
    if c.get("n_ties"):
        s += f"; {c['n_ties']} tied pair(s) excluded"
    return s + "."


@dataclass
class VerdictLine:
    """One proxy size against the target on one eval set."""

    proxy: str = doc("proxy size")
    target: str = doc("target size")
    verdict: str = doc("holds | fails | inconclusive")
    reason: str = doc("the figures, then what blocks a verdict and the remedy that can work")
    sentence: str = doc("the comparison in words")
    decision_accuracy: float | None = doc("decision accuracy against the target")
    decision_accuracy_ci: list[float] | None = doc("per-comparison 95% interval")
    decision_accuracy_sci: list[float] | None = doc("the simultaneous 95% interval the verdict used")
    spearman: float | None = doc("Spearman rho")
    p_value: float | None = doc("one-sided p of the rank test")


@dataclass
class MetricVerdicts:
    metric: str = doc("eval set")
    direction: str = doc("'lower' or 'higher' is better")
    target: str = doc("target size")
    lines: list[VerdictLine] = doc("one per proxy size", factory=list)


@dataclass
class Summary:
    """Verdicts per eval set (every proxy against the largest size) and the bottom line."""

    target: str = doc("target size")
    verdict_rule: str = doc("the rule in words")
    family_size: int = doc("claims the simultaneous intervals cover")
    per_metric: list[MetricVerdicts] = doc("verdicts per eval set", factory=list)
    bottom_line: list[str] = doc("3-7 lines atop the page and on the terminal", factory=list)


def summarize(report: dict, primary: list[dict]) -> dict:
    """Per metric: every proxy against the largest size, with a verdict, its reason and a sentence (a `Summary`, as a dict)."""
    target = report["sizes"][-1]
    m = sum(1 for c in primary if c["target"] == target)
    out = Summary(target=target, verdict_rule=RULE, family_size=m)
    for metric in report["metrics"]:
        mv = MetricVerdicts(metric=metric, direction=report["directions"][metric], target=target)
        for c in primary:
            if c["metric"] == metric and c["target"] == target:
                v, why = verdict(c, m)
                mv.lines.append(
                    VerdictLine(
                        proxy=c["proxy"],
                        target=target,
                        verdict=v,
                        reason=why,
                        sentence=sentence(c),
                        decision_accuracy=c["decision_accuracy"],
                        decision_accuracy_ci=c["decision_accuracy_ci"],
                        decision_accuracy_sci=simultaneous_ci(c, m),
                        spearman=c["spearman"],
                        p_value=c.get("p_value"),
                    )
                )
        out.per_metric.append(mv)
    return asdict(out)


def _winner(report: dict, primary: list[dict]) -> str:
    """Which recipe leads at the target on every eval set, or that the target cannot separate its top recipes.
    A lead beyond 2 x the target's seed noise of a difference "wins"; with one seed at the target the gap cannot
    be tested, so the recipe only "leads"; within the noise (or tied) no recipe is named."""
    target = report["sizes"][-1]
    parts, unsure, metrics = [], [], 0
    for metric in report["metrics"]:
        c = next((c for c in primary if c["metric"] == metric and c["target"] == target and c["target_values"]), None)
        if c is None:
            continue
        metrics += 1
        higher = report["directions"][metric] == "higher"
        vals = sorted(c["target_values"].items(), key=lambda kv: -kv[1] if higher else kv[1])
        best = c["regret"]["best_targets"] if c.get("regret") else [vals[0][0]]
        tn = c.get("target_noise")
        gap = abs(vals[1][1] - vals[0][1]) if len(vals) > 1 else None
        noise = 2 * tn["target_seed_sd"] * (2 / tn["target_k"]) ** 0.5 if tn else None
        if len(best) > 1:
            unsure.append(f"{metric} ({len(best)} recipes tie)")
        elif noise is not None and gap is not None and gap <= noise:
            unsure.append(f"{metric} (top gap {gap:.2g} within 2 x its seed noise {noise:.2g})")
        else:
            parts.append((metric, best[0], noise is not None, gap))
    out = []
    if parts:
        groups: dict[tuple[str, bool], list] = {}
        for metric, r, tested, gap in parts:
            groups.setdefault((r, tested), []).append((metric, gap))
        ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))
        bits = []
        for (r, tested), ms in ranked[:3]:
            names = ", ".join(m for m, _ in ms) if len(ms) <= 4 else f"{len(ms)} eval sets"
            if tested:
                bits.append(f"{r} wins on {names}")
            else:
                gaps = [g for _, g in ms if g is not None]
                gap = f", smallest lead {min(gaps):.2g}" if gaps else ""
                bits.append(f"{r} leads on {names} (one seed at the target: lead untested{gap})")
        rest = sum(len(ms) for _, ms in ranked[3:])
        out.append(f"At {target}: " + "; ".join(bits) + (f"; other recipes lead on the remaining {rest} eval set(s)" if rest else "") + ".")
    if unsure:
        out.append(
            f"At {target}: the target cannot separate the top recipes on "
            + ", ".join(unsure[:4])
            + (f" and {len(unsure) - 4} more eval set(s)" if len(unsure) > 4 else "")
            + "."
        )
    return " ".join(out) if out else f"At {target}: no recipe values."


def bottom_line(report: dict, primary: list[dict]) -> list[str]:
    """3-6 lines for the top of the report and the terminal: winner, verdicts with reasons, LR assumption, warnings."""
    lines = [_winner(report, primary)]
    by_proxy: dict[str, dict[str, list]] = {}
    for pm in report["summary"]["per_metric"]:
        for ln in pm["lines"]:
            by_proxy.setdefault(ln["proxy"], {}).setdefault(ln["verdict"], []).append((pm["metric"], ln["reason"]))
    shown = list(by_proxy)[-3:]
    if len(by_proxy) > len(shown):
        lines.append(f"({len(by_proxy) - len(shown)} smaller proxy size(s) not listed here; see the verdict table.)")
    for proxy in shown:
        groups = by_proxy[proxy]
        bits = []
        for v in ("holds", "fails", "inconclusive"):
            items = groups.get(v, [])
            if not items:
                continue
            names = ", ".join(m for m, _ in items) if len(items) <= 4 else f"{len(items)} eval sets"
            reasons = list(dict.fromkeys(r for _, r in items))
            bits.append(f"{v} on {names} ({reasons[0]}{'; and others' if len(reasons) > 1 else ''})")
        lines.append(f"{proxy} -> {report['summary']['target']}: " + "; ".join(bits) + ".")
    lines.append(report["reduced_lr"]["assumption"])
    lr = reduced_lr_line(report.get("reduced_lr") or {})
    if lr:
        lines.append(lr)
    warnings = list(report.get("warnings") or [])
    if warnings:
        lines.append("Warning: " + " | ".join(warnings[:3]) + (f" (+{len(warnings) - 3} more)" if len(warnings) > 3 else ""))
    plan = planner_line(report.get("frontier"))
    if plan and len(lines) < 6:  # only when it fits: before the LR assumption and the warnings
        lines.insert(len(lines) - 1 - bool(warnings), plan)
    return lines[:7]


def reduced_lr_line(section: dict) -> str | None:
    """The reduced-LR result in one line: where a proxy LR other than the tuned one ranks the target better."""
    best = []
    for e in section.get("entries") or []:
        b, std = e.get("best_tuned"), e.get("standard_tuned")
        if not b or b.get("decision_accuracy") is None:
            continue
        ref = std if std and std.get("decision_accuracy") is not None else None
        best.append((e["metric"], e["proxy"], b, ref))
    if not best:
        return None
    m, p, b, ref = max(best, key=lambda t: t[2]["decision_accuracy"] - (t[3] or t[2])["decision_accuracy"])
    da = lambda pt: f"{pt['decision_accuracy']:.2f}" + (f" {_ci(pt['decision_accuracy_ci'])}" if pt.get("decision_accuracy_ci") else "")
    vs = f" vs {da(ref)} at the standard LR" if ref is not None else ""
    return (
        f"Reduced LR: across {len(best)} (eval set, proxy) curves the largest gain is {m} at {p} with proxy LR {b['proxy_lr']:g}: "
        f"DA {da(b)}{vs} (95% intervals; see the LR section)."
    )


def planner_line(front: dict | None) -> str | None:
    """The compute-decision planner's answer in one line (report.json `frontier.plans`), or None without plans."""
    plans = (front or {}).get("plans") or []
    if not plans:
        return None
    if len(plans) == 1:
        return "Planner: " + plans[0]["sentence"]
    level = front["decision_level"]
    names = lambda ms: ", ".join(ms) if len(ms) <= 3 else f"{len(ms)} eval sets"
    groups: dict = {}
    for p in plans:
        groups.setdefault(p["choice"], []).append(p["metric"])
    chosen = sorted(((c, ms) for c, ms in groups.items() if c), key=lambda kv: -len(kv[1]))
    none = groups.get(None, [])
    if not chosen:
        return (
            f"Planner: no proxy size, step or extrapolation reaches decision accuracy {level:.2f} at its 95% lower bound on any "
            f"of the {len(none)} eval sets (see the compute-decision frontier)."
        )
    s = (
        f"Planner: the cheapest choice whose decision accuracy clears {level:.2f} at its 95% lower bound is "
        + "; ".join(f"{c} for {names(ms)}" for c, ms in chosen[:3])
        + (f"; {len(chosen) - 3} other choices" if len(chosen) > 3 else "")
    )
    return s + (f"; nothing clears it on {names(none)}." if none else ".")
