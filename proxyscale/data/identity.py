"""A cell's run id: its config's identity (config.identity_of) plus what besides the config changes its
result - the built-in corpora's text, the versions of the curation steps it uses and their inputs
and the content of local data files (`environment`). It lives above the data package because that environment is the data's; the pure
hash (config.run_id_of) stays in config, so the collector can check records without importing data.

Importing this module registers the `proxyscale_run_id` resolver that names every cell's folder
(hydra.run.dir / hydra.sweep.subdir in conf/config.yaml): the planner, the job and the launch task
(also in worker processes) import it.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from proxyscale.config import plain, run_id_of
from proxyscale.data import curation, sources


def environment(config: dict) -> dict:
    """What besides the config changes a cell's result: the text of the built-in corpora (they come
    from the installed Python and packages: a `pip install` changes them) and the versions of the
    curation steps the recipe uses, plus the inputs of steps that have some (the scoring model of
    select_by_proxy), and the content of every local data file (`kind: files` sources and eval sets, task files).
    Part of the run id; records store it (extra.identity_env)."""
    steps = (config.get("data") or {}).get("steps") or []
    env = {
        "corpora": sources.builtin_fingerprint(),
        "step_versions": {st["op"]: curation.STEPS[st["op"]].version for st in steps if st.get("op") in curation.STEPS},
    }
    cache_dir = (config.get("paths") or {}).get("cache_dir")
    files = {}
    for side, srcs in (("data", (config.get("data") or {}).get("sources")), ("eval", (config.get("eval") or {}).get("sets"))):
        for s in srcs or []:
            fp = sources.files_fingerprint(s, cache_dir) if isinstance(s, dict) else None
            if fp:
                files[f"{side}/{s.get('name')}"] = fp
    if files:  # local data files by content (absent for cells without: their ids stay)
        env["files"] = files
    sets = (config.get("eval") or {}).get("sets") or []
    if any((s or {}).get("task") == "mc" for s in sets):  # mc cells recorded other accuracies before: they train again
        from proxyscale.data.tasks import METRICS_VERSION

        env["mc_metrics"] = METRICS_VERSION
    inputs = curation.step_inputs(steps, cache_dir)  # select_by_proxy: the scorer's run id and checkpoint hash (absent for other recipes: their ids stay)
    if inputs:
        env["step_inputs"] = inputs
    return env


def run_id(cfg: DictConfig) -> str:
    """Deterministic, readable id: reruns of the same cell find the same folder; any change to the
    config, the built-in corpora or a curation step's version is another id."""
    config = plain(cfg)
    return run_id_of(config, environment(config))


OmegaConf.register_new_resolver("proxyscale_run_id", lambda *, _root_: run_id(_root_), replace=True)
