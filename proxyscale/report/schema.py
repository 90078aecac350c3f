"""`proxyscale report --schema`: the JSON Schema of report.json, generated from the dataclasses the analysis
builds (`SECTIONS`, and Comparison): a field added to one of them appears here with its type and doc. The plain
top-level keys (source, sizes, notes, ...) are described by their entry in the report.json docstring of
`proxyscale.report.build`."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

from proxyscale.analysis.baselines import Baselines
from proxyscale.analysis.datamodels import Attribution
from proxyscale.analysis.decision import Decision, Losses
from proxyscale.analysis.early import EarlySignal
from proxyscale.analysis.examples import PerExample
from proxyscale.analysis.frontier import Frontier
from proxyscale.analysis.protocol import ReducedLR, SeedNoise
from proxyscale.analysis.scaling import Prediction
from proxyscale.analysis.types import STATISTICS, Comparison
from proxyscale.analysis.verdict import Summary

# report.json key -> the dataclass the analysis builds it from (seed_noise: a list of them)
SECTIONS = {
    "decision": Decision,
    "losses": Losses,
    "summary": Summary,
    "reduced_lr": ReducedLR,
    "baselines": Baselines,
    "early_signal": EarlySignal,
    "prediction": Prediction,
    "frontier": Frontier,
    "per_example": PerExample,
    "attribution": Attribution,
}

PRIMITIVE = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _type(tp) -> dict[str, Any]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return {}
    if tp in PRIMITIVE:
        return {"type": PRIMITIVE[tp]}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type(a) if a is not type(None) else {"type": "null"} for a in args]}
    if tp is list or origin is list:
        return {"type": "array", **({"items": _type(args[0])} if args else {})}
    if tp is dict or origin is dict:
        return {"type": "object"}
    if dataclasses.is_dataclass(tp):
        return dataclass_schema(tp)
    return {}


def dataclass_schema(cls) -> dict[str, Any]:
    """An object schema: one property per field, typed from its annotation, described by its `doc` metadata."""
    hints = typing.get_type_hints(cls)
    props = {}
    for f in dataclasses.fields(cls):
        p = _type(hints[f.name])
        if f.metadata.get("doc"):
            p["description"] = f.metadata["doc"]
        props[f.name] = p
    out = {"type": "object", "title": cls.__name__, "properties": props}
    if cls.__doc__:
        out["description"] = " ".join(cls.__doc__.split())
    return out


def _documented_sections() -> dict[str, str]:
    """key -> its text in build.py's report.json docstring (top-level keys indented by two spaces)."""
    from proxyscale.report import build

    doc = (build.__doc__ or "").split("report.json schema", 1)[-1]
    out, key = {}, None
    for line in doc.splitlines():
        m = re.match(r"^  ([a-z_]+):\s?(.*)$", line)
        if m:
            key = m.group(1)
            out[key] = m.group(2).strip()
        elif key and line.startswith("    "):
            out[key] += " " + line.strip()
    return out


def report_schema() -> dict[str, Any]:
    from proxyscale.report.build import SCHEMA_VERSION

    comp = dataclass_schema(Comparison)
    comp["properties"].update({s.name: {"type": ["number", "null"], "description": s.doc + " (registered statistic)"} for s in STATISTICS.values()})
    props: dict[str, Any] = {key: {"description": text} for key, text in _documented_sections().items()}
    props.update(
        schema_version={"const": SCHEMA_VERSION, "description": "bumped when a key changes meaning"},
        comparisons={"type": "array", "items": comp, "description": props.get("comparisons", {}).get("description", "")},
        seed_noise={"type": "array", "items": dataclass_schema(SeedNoise)},
    )
    props.update({key: dataclass_schema(cls) for key, cls in SECTIONS.items()})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "proxyscale report.json",
        "type": "object",
        "required": ["schema_version", "comparisons", "summary"],
        "properties": props,
    }
