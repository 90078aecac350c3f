"""Verdicts (holds / fails / inconclusive, each with a reason), the per-metric summary and the bottom line.

holds: the rank test rejects "the proxy orders recipes at random with respect to the target" (one-sided
p < ALPHA: 3 recipes never can, 4 only when perfect), at least MIN_PAIRS untied pairs, the target resolves
most pairs beyond its own seed noise (when it has seeds), decision accuracy >= DA_BAR with a non-zero-width
interval whose lower end is above chance (0.5).
fails: the whole decision-accuracy interval lies below DA_BAR while the target resolves its pairs: the
proxy disagrees with the target beyond noise. Everything else is inconclusive, with what would resolve it.
"""

from __future__ import annotations

ALPHA = 0.05
DA_BAR = 0.8
MIN_PAIRS = 6
MIN_RESOLVABLE = 0.5
RULE = (
    f"holds: one-sided rank test p < {ALPHA}, >= {MIN_PAIRS} untied pairs, the target resolving >= {MIN_RESOLVABLE:.0%} of pairs "
    f"beyond 2 x its seed noise (when it has seeds), decision accuracy >= {DA_BAR} with its interval above 0.5; "
    f"fails: the decision-accuracy interval lies below {DA_BAR} and the target resolves its pairs; otherwise inconclusive"
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


def verdict(c: dict) -> tuple[str, str]:
    """(holds | fails | inconclusive, reason) of one comparison (see the module doc)."""
    da, ci, n, p = c.get("decision_accuracy"), c.get("decision_accuracy_ci"), c["n_recipes"], c.get("p_value")
    if da is None:
        return "inconclusive", f"decision accuracy undefined: {c.get('reason')}"
    tail = "" if c.get("target_noise") else f" ({ASSUMES_REAL})"
    blocked = target_blocker(c)
    figs = f"decision accuracy {da:.2f} {_ci(ci)}" + ("" if p is None else f", rank test p {p:.2g}")
    if ci and ci[1] < DA_BAR and not blocked and c["n_pairs"] >= MIN_PAIRS:
        return "fails", f"{figs}: below {DA_BAR} even at the top of its interval{tail}"
    why = []
    if n <= 3:
        why.append(f"{n} recipes can never show agreement beyond chance (smallest one-sided p 1/6): add recipes")
    elif c["n_pairs"] < MIN_PAIRS:
        why.append(f"only {c['n_pairs']} untied pair(s) (need {MIN_PAIRS}): add recipes")
    if blocked:
        why.append(blocked)
    if n > 3 and (p is None or p >= ALPHA):
        why.append(f"rank agreement not significant (one-sided p {'n/a' if p is None else f'{p:.2g}'}): add recipes or seeds")
    if not ci or ci[1] <= ci[0]:
        why.append("no non-degenerate interval")
    elif ci[0] <= 0.5:
        why.append(f"the interval {_ci(ci)} reaches chance (0.5): add recipes or seeds")
    if da < DA_BAR:
        why.append(f"decision accuracy {da:.2f} is below {DA_BAR} but its interval reaches it")
    if why:
        return "inconclusive", f"{figs}; " + "; ".join(why) + tail
    return "holds", f"{figs}{tail}"


def sentence(c: dict) -> str:
    if c.get("decision_accuracy") is None:
        return f"the {c['proxy']} proxy vs the {c['target']} target on {c['metric']}: undefined ({c.get('reason')})."
    flips = c["n_flips"]
    s = (
        f"the {c['proxy']} proxy ranks these {c['n_recipes']} recipes the way the {c['target']} target does with decision accuracy "
        f"{c['decision_accuracy']:.2f} {_ci(c['decision_accuracy_ci'])}; {flips} pair{'s' if flips != 1 else ''} flip"
        f"{'' if flips != 1 else 's'} of {c['n_pairs']}"
    )
    if c.get("spearman") is not None:
        s += f"; Spearman {c['spearman']:.2f} {_ci(c['spearman_ci'])}"
    if c.get("n_ties"):
        s += f"; {c['n_ties']} tied pair(s) excluded"
    return s + "."


def summarize(report: dict, primary: list[dict]) -> dict:
    """Per metric: every proxy against the largest size, with a verdict, its reason and a sentence."""
    target = report["sizes"][-1]
    per = []
    for metric in report["metrics"]:
        lines = []
        for c in primary:
            if c["metric"] == metric and c["target"] == target:
                v, why = verdict(c)
                lines.append(
                    {
                        "proxy": c["proxy"],
                        "target": target,
                        "verdict": v,
                        "reason": why,
                        "sentence": sentence(c),
                        "decision_accuracy": c["decision_accuracy"],
                        "decision_accuracy_ci": c["decision_accuracy_ci"],
                        "spearman": c["spearman"],
                        "p_value": c.get("p_value"),
                    }
                )
        per.append({"metric": metric, "direction": report["directions"][metric], "target": target, "lines": lines})
    return {"target": target, "per_metric": per, "verdict_rule": RULE}


def _winner(report: dict, primary: list[dict]) -> str:
    """Which recipe wins at the target per metric, or that the target cannot separate its top recipes."""
    target = report["sizes"][-1]
    parts, unsure = [], []
    for metric in report["metrics"]:
        c = next((c for c in primary if c["metric"] == metric and c["target"] == target and c["target_values"]), None)
        if c is None:
            continue
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
            parts.append((metric, best[0]))
    out = []
    if parts:
        wins: dict[str, list[str]] = {}
        for metric, r in parts:
            wins.setdefault(r, []).append(metric)
        out.append(
            f"At {target}: "
            + "; ".join(
                f"{r} wins on {', '.join(ms) if len(ms) <= 4 else f'{len(ms)} eval sets'}" for r, ms in sorted(wins.items(), key=lambda kv: -len(kv[1]))[:3]
            )
            + "."
        )
    if unsure:
        out.append(f"At {target}: the target cannot separate the top recipes on " + ", ".join(unsure[:4]) + (" ..." if len(unsure) > 4 else "") + ".")
    return " ".join(out) if out else f"At {target}: no recipe values."


def bottom_line(report: dict, primary: list[dict]) -> list[str]:
    """3-6 lines for the top of the report and the terminal: winner, verdicts with reasons, LR assumption, warnings."""
    lines = [_winner(report, primary)]
    by_proxy: dict[str, dict[str, list]] = {}
    for pm in report["summary"]["per_metric"]:
        for ln in pm["lines"]:
            by_proxy.setdefault(ln["proxy"], {}).setdefault(ln["verdict"], []).append((pm["metric"], ln["reason"]))
    for proxy in list(by_proxy)[-3:]:
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
    warnings = list(report.get("warnings") or [])
    if warnings:
        lines.append("Warning: " + " | ".join(warnings[:3]) + (f" (+{len(warnings) - 3} more)" if len(warnings) > 3 else ""))
    plan = planner_line(report.get("frontier"))
    if plan and len(lines) < 6:  # only when it fits: before the LR assumption and the warnings
        lines.insert(len(lines) - 1 - bool(warnings), plan)
    return lines[:6]


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
