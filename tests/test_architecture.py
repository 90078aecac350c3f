"""The package's import graph follows the flow (conf -> grid -> launch -> job -> record -> collect ->
analysis -> report, tracking beside the job): no import circle, function-level imports included, and
the report side never reaches the training side."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PKG = ROOT / "proxyscale"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> proxyscale modules it imports anywhere in its body (top level or inside functions)."""
    files = {_module(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != mod and name.startswith("proxyscale"):
                    graph[mod].add(name)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert "proxyscale.grid" in graph and graph["proxyscale.cli"], "the graph reader found no imports"
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_graph_reader_sees_function_level_circles(tmp_path):
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_upstream_stages_never_import_downstream_ones():
    graph = import_graph()
    reach: dict[str, set[str]] = {}

    def closure(m: str) -> set[str]:
        if m not in reach:
            reach[m] = set()
            for n in graph[m]:
                reach[m] |= {n} | closure(n)
        return reach[m]

    leaves = ("proxyscale.config", "proxyscale.budget", "proxyscale.errors", "proxyscale.record")
    for leaf in leaves:
        assert not {m for m in closure(leaf) if not m.startswith(leaves)}, f"{leaf} imports {sorted(closure(leaf))}"
    for mod in graph:
        if mod.startswith(("proxyscale.report", "proxyscale.analysis", "proxyscale.collect")):
            bad = {m for m in closure(mod) if m.startswith(("proxyscale.job", "proxyscale.data", "proxyscale.launch", "proxyscale.grid"))}
            assert not bad, f"{mod} reaches the training side: {sorted(bad)}"
