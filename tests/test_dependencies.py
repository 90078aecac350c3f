"""Dependencies as a library declares them: ranges in pyproject.toml that contain the tested lock
(constraints.txt), every third-party import declared (in the core or in the extra of its feature),
nothing declared that nothing imports, and each optional feature failing in one line without its extra."""

from __future__ import annotations

import ast
import re
import sys

import pytest
import tomllib
from packaging.requirements import Requirement

from helpers import ROOT

# import name -> distribution name, where they differ
DIST = {"yaml": "pyyaml", "tensorboardX": "tensorboardx", "hydra": "hydra-core", "sklearn": "scikit-learn", "trak": "traker"}
# distributions used without an import statement of their own name: Hydra plugins found by entry point / namespace
USED_WITHOUT_IMPORT = {"hydra-joblib-launcher", "hydra-submitit-launcher"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _declared() -> dict[str, list[Requirement]]:
    """'core' and each extra -> its requirements (the self-referencing `all` left out)."""
    p = _project()
    out = {"core": [Requirement(r) for r in p["dependencies"]]}
    for extra, reqs in p["optional-dependencies"].items():
        out[extra] = [Requirement(r) for r in reqs if not r.startswith("proxyscale")]
    return out


def _imports() -> set[str]:
    std = set(sys.stdlib_module_names)
    found = set()
    for folder in ("proxyscale", "hydra_plugins"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    names = [node.module] if isinstance(node, ast.ImportFrom) and not node.level else []
                found |= {n.split(".")[0] for n in names if n}
    from proxyscale import extras

    found |= set(extras.FEATURES)  # optional modules are imported by name through extras.need
    return {m for m in found if m not in std and m not in ("proxyscale", "hydra_plugins")}


def test_every_declared_range_contains_the_locked_version():
    lock = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            lock[_norm(name)] = version.strip()
    for group, reqs in _declared().items():
        for r in reqs:
            assert _norm(r.name) in lock, f"{r.name} ({group}) is not in constraints.txt"
            assert r.specifier.contains(lock[_norm(r.name)], prereleases=True), f"{r} ({group}) excludes the locked {lock[_norm(r.name)]}"
            if group != "test":
                assert "==" not in str(r.specifier), f"{r} ({group}): a library declares ranges; the lock is constraints.txt"


def test_every_import_is_declared_and_every_declaration_imported():
    declared = {_norm(r.name) for group, reqs in _declared().items() if group != "test" for r in reqs}
    imported = {_norm(DIST.get(m, m)) for m in _imports()}
    assert imported - declared == set(), f"imported, not declared: {sorted(imported - declared)}"
    assert declared - imported - USED_WITHOUT_IMPORT == set(), f"declared, never imported: {sorted(declared - imported - USED_WITHOUT_IMPORT)}"


def test_each_extra_is_the_one_its_feature_message_names():
    from proxyscale import extras

    p = _project()["optional-dependencies"]
    for module, (extra, _) in extras.FEATURES.items():
        assert _norm(DIST.get(module, module)) in {_norm(Requirement(r).name) for r in p[extra]}, (module, extra)
        assert extra in p["all"][0]


@pytest.mark.parametrize(
    "module, argv, expected",
    [
        ("wandb", ["-m", "logger=wandb", "model=debug", "dry_run=true"], "pip install 'proxyscale[wandb]'"),
        ("tensorboardX", ["-m", "logger=tensorboard", "model=debug", "dry_run=true"], "pip install 'proxyscale[tensorboard]'"),
        ("datasets", ["-m", "data=hub_c4", "model=debug", "dry_run=true"], "pip install 'proxyscale[hub]'"),
        ("datasketch", ["-m", "data=near_deduped", "model=debug", "dry_run=true"], "pip install 'proxyscale[dedup]'"),
    ],
)
def test_a_feature_without_its_extra_is_one_line_and_exit_2(tmp_path, module, argv, expected):
    """The module made unimportable (a None entry in sys.modules, and find_spec answering None), as when the
    extra is not installed: the planner stops before anything runs."""
    import subprocess

    hide = "tensorboard', 'tensorboardX" if module == "tensorboardX" else module
    code = (
        "import importlib.util, sys\n"
        f"hidden = ['{hide}']\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name.split('.')[0] in hidden else real(name, *a)\n"
        "for h in hidden: sys.modules[h] = None\n"
        "from proxyscale.cli import main\n"
        f"sys.argv = ['proxyscale', *{argv!r}, 'paths.output_dir={tmp_path}']\n"
        "main()\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("proxyscale: error:") and expected in lines[0], lines
    assert not any(tmp_path.iterdir())
