"""The planner: from a command line to a validated list of cells, with run ids and a cost table.

Both the CLI's pre-flight check (`compose_grid`) and the Hydra sweeper expand a grid through
`plan`, so the cells that were validated are exactly the cells that launch. A named grid
(conf/grid/*.yaml) sets `hydra.sweeper.params`; a command-line sweep of the same key replaces that
axis. The planner sits above config, data and tracking: it is the one place that runs all of
their checks (`check_cell`), so the job never validates again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from proxyscale import budget, record, tracking
from proxyscale import config as C
from proxyscale.data import identity
from proxyscale.data.curation import check_steps
from proxyscale.data.sources import check_source
from proxyscale.errors import UserError

log = logging.getLogger("proxyscale")


class GridError(UserError):
    """A grid that must not launch; the message is the one line the CLI prints."""


def one_line(exc: BaseException) -> str:
    """Hydra's composition errors span several lines; keep what names the problem."""
    from hydra.errors import MissingConfigException

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, MissingConfigException) and getattr(exc, "options", None):
        return f"{first} (available: {', '.join(sorted(exc.options))})"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).strip():
        first = f"{first.rstrip('.')}: {str(cause).strip().splitlines()[0]}"
    key = getattr(exc, "full_key", None)
    return f"{first} (key: {key})" if key and str(key) not in first else first


def config_keys(cfg) -> list[str]:
    """Every dotted key of a composed config (Hydra's node left out; lists are leaves)."""
    from omegaconf import DictConfig as DC

    out: list[str] = []

    def walk(node, prefix):
        for k in node.keys():
            key = f"{prefix}{k}"
            if key == "hydra":
                continue
            out.append(key)
            try:
                child = node._get_node(k)
            except Exception:
                continue
            if isinstance(child, DC) and not child._is_missing() and not child._is_none():
                walk(child, key + ".")

    walk(cfg, "")
    return out


def closest_keys(key: str, keys: list[str], n: int = 2) -> list[str]:
    """The dotted keys nearest to a mistyped one, by difflib's ratio of their last parts (so `lr`
    finds optim.lr and a shared `trainer.` prefix does not make every trainer key look close);
    keys under the same parent get 0.1 more (and need a ratio of 0.5, others 0.6) and come first; within 0.1 of the best."""
    import difflib

    parent, leaf = key.rpartition(".")[0], key.rsplit(".", 1)[-1]

    def ratio(k: str) -> float:
        return difflib.SequenceMatcher(None, leaf, k.rsplit(".", 1)[-1]).ratio()

    ranked = sorted(((ratio(k) + 0.1 * (k.rpartition(".")[0] == parent), ratio(k), k) for k in keys if k != key), key=lambda t: (-t[0], len(t[2])))
    close = [(sc, k) for sc, r, k in ranked[:n] if sc >= 0.6 and sc >= ranked[0][0] - 0.1]
    return [k for sc, k in sorted(close, key=lambda t: (t[1].rpartition(".")[0] != parent, -t[0]))]  # the same parent's first


def explain(exc: BaseException, compose: Callable[[list[str]], DictConfig] | None = None) -> str:
    """one_line(exc), plus "did you mean ..." when it names a key the config does not have
    (the candidates: the keys of the default composed config)."""
    import re

    line = one_line(exc)
    m = re.search(r"Could not (?:override|delete from config)\.? '?([\w.]+)'?", str(exc))
    if m is None or compose is None:
        return line
    try:
        keys = config_keys(compose([]))
    except Exception:  # the suggestion is a courtesy: the error itself stands
        return line
    close = closest_keys(m.group(1), keys)
    return f"{line} (did you mean {' or '.join(close)}?)" if close else line


@dataclass
class Cell:
    overrides: list[str]
    cfg: DictConfig  # the cell's config; without Hydra's node when planned through a Composer template
    run_id: str
    full: Callable[[], DictConfig] | None = None  # the config with Hydra's node, as the launcher needs it
    view: C.AttrDict | None = None  # the resolved config as plain AttrDicts (fast reads for the cost table)

    def full_config(self) -> DictConfig:
        return self.full() if self.full else self.cfg


def expand(arguments: list[str], params: dict | None, loader=None) -> list[list[str]]:
    """Cartesian product of the grid's axes and the command line's overrides. `loader` (Hydra's
    config loader) lets sweeps such as data=glob(mix/*) list a group's options."""
    parser = OverridesParser.create(config_loader=loader)
    cli = parser.parse_overrides(list(arguments))
    cli_keys = {o.get_key_element() for o in cli}
    axes = [f"{k}={v}" for k, v in (params or {}).items() if k not in cli_keys]
    overrides = [_glob_as_choices(o, loader, parser) for o in parser.parse_overrides(axes) + cli]
    for o in overrides:
        check_axis(o)
    return [list(c) for batch in BasicSweeper.split_arguments(overrides, None) for c in batch]


def group_options(loader, group: str, config_name: str | None = None, overrides: list[str] | None = None) -> list[str]:
    """Every config of a group, those in its sub-folders as `sub/name` (`mix/balanced_mix000`, `ladder/readme_05`)."""
    from hydra.core.object_type import ObjectType

    kw = {"config_name": config_name, "overrides": overrides} if config_name else {}
    found = list(loader.get_group_options(group, results_filter=ObjectType.CONFIG, **kw))
    for sub in loader.get_group_options(group, results_filter=ObjectType.GROUP, **kw):
        found += [f"{sub}/{name}" for name in group_options(loader, f"{group}/{sub}", config_name, overrides)]
    return found


def _glob_as_choices(o, loader, parser):
    """A glob() axis becomes the list of options it matches. Hydra's glob() lists one folder only, so a pattern with
    a `/` (`data=glob(mix/*)`) is matched against the sub-folders' configs too; one without keeps to the group's own
    folder (so `glob(*)` means what it did)."""
    from hydra.core.override_parser.types import Glob

    value = o.value()
    if loader is None or not isinstance(value, Glob) or not any("/" in g for g in value.include):
        return o
    names = value.filter(group_options(loader, o.key_or_group))
    if not names:
        return o
    return parser.parse_overrides([f"{o.get_key_element()}={','.join(names)}"])[0]


def check_axis(o) -> None:
    """A sweep axis names each value once: `model=debug,debug` (or optim.lr=1e-3,0.001) is refused
    instead of silently running one cell."""
    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep

    value = o.value()
    if isinstance(value, RangeSweep) and any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
        raise GridError(
            f"{o.input_line}: range() steps by {value.step:g} from {value.start:g}, so over floats it is not a grid of values; "
            f"list them instead, e.g. {o.get_key_element()}=1e-3,3e-3,1e-2"
        )
    if not (o.is_sweep_override() and isinstance(value, ChoiceSweep)):
        return
    seen, dups = set(), []
    for v in value.list:
        k = repr(v)
        if k in seen and k not in dups:
            dups.append(k)
        seen.add(k)
    if dups:
        names = ", ".join(d.strip("'") for d in dups)
        raise GridError(f"{o.input_line}: {names} appears more than once on the {o.get_key_element()} axis (name each value once)")


def check_lists(parsed: list, multirun: bool, repo, compose_plain: Callable[[list[str]], DictConfig]) -> None:
    """`[a,b]` is one list value, never a sweep: `data=[balanced,noisy]` would merge two recipes
    into one cell and `-m optim.lr=[1e-3,3e-3]` would fail as a float. Refused in one line that
    points to `a,b`. Keys whose value is a list (data.steps, eval.sets) keep the syntax."""
    listed = [o for o in parsed if not o.is_sweep_override() and not o.is_hydra_override() and isinstance(o.value(), list)]
    if not listed:
        return
    axis = lambda o: f"{o.get_key_element()}={','.join(str(v) for v in o.value())}"  # noqa: E731
    for o in listed:
        if repo is not None and repo.group_exists(o.key_or_group):
            raise GridError(f"{o.input_line}: [..] would merge {len(o.value())} {o.key_or_group} options into one config; to sweep them write -m {axis(o)}")
    if not multirun:
        return  # a list for a scalar key is Hydra's own one-line conversion error
    from omegaconf import ListConfig, OmegaConf

    base = compose_plain([x.input_line for x in parsed if x not in listed and not x.is_sweep_override()])
    for o in listed:
        current = OmegaConf.select(base, o.key_or_group, default=None, throw_on_missing=False)
        if current is not None and not isinstance(current, (ListConfig, DictConfig)):
            raise GridError(f"{o.input_line}: [..] is one list value, not a sweep; to sweep {o.key_or_group} write {axis(o)}")


def check_devices(cells: list["Cell"]) -> None:
    """Cells this machine cannot run are refused before anything runs: a GPU (trainer.accelerator gpu/cuda, or
    mps) on a machine without one, more devices than it has (a CPU process per core), several nodes (a cluster's
    job: proxyscale submit). torch is imported only when a GPU is asked for."""
    wanted = {}
    for c in cells:
        t = (c.view if c.view is not None else c.cfg).trainer
        acc = str(t.accelerator).lower()
        wanted.setdefault((acc, int(t.devices), int(t.num_nodes)), c)
    for (acc, devices, nodes), c in wanted.items():
        where = f"(cell: {' '.join(c.overrides) or 'defaults'})"
        if nodes > 1:
            raise GridError(f"trainer.num_nodes={nodes} needs a cluster: run it with proxyscale submit (one process per device on each node) {where}")
        if acc == "cpu" and devices > (os.cpu_count() or 1):
            raise GridError(f"trainer.devices={devices} CPU processes but this machine has {os.cpu_count()} cores {where}")
        if acc not in ("gpu", "cuda", "mps"):
            continue
        import torch

        have = (1 if torch.backends.mps.is_available() else 0) if acc == "mps" else torch.cuda.device_count()
        what = "MPS device" if acc == "mps" else "CUDA GPU"
        if not have:
            raise GridError(f"trainer.accelerator={acc} but this machine has no {what} (use trainer=cpu here, or proxyscale submit to a GPU cluster) {where}")
        if devices > have:
            raise GridError(f"trainer.devices={devices} but this machine has {have} {what}{'s' * (have != 1)} {where}")


def check_resumable(cells: list["Cell"]) -> None:
    """A pending cell whose checkpoint its placement cannot continue (an FSDP checkpoint on another process count or
    strategy, job.run.resume_problem) is refused before anything runs. torch is imported only when a checkpoint exists."""
    from proxyscale.job.run import check_resumable as check

    for c in cells:
        try:
            check(c.cfg, sweep_dir(c.cfg) / c.run_id)
        except C.ConfigError as exc:
            raise GridError(f"{exc} (cell: {' '.join(c.overrides) or 'defaults'})") from None


class Composer:
    """Hydra composition of a grid's cells, each distinct combination of config-group overrides
    (model=..., data=...) composed once: a cell is a copy of its combination's config with its value
    overrides (optim.lr=..., seed=...) applied the way Hydra applies them after composing the defaults
    (ConfigLoaderImpl._apply_overrides_to_config), and hydra.overrides.task / override_dirname set
    as Hydra sets them. Composing every cell through Hydra cost ~0.2 s a cell (a 10,000-cell grid:
    ~35 min); a copy and an update cost a few ms. Overrides the shortcut does not cover (+key, ~key,
    ++key, hydra.* values, package renames) compose the cell in full."""

    def __init__(self, compose: Callable[[list[str]], DictConfig], loader=None):
        self.compose, self.loader = compose, loader
        self.repo = getattr(loader, "repository", None)
        self.parser = OverridesParser.create(config_loader=loader)
        self.templates: dict[tuple[str, ...], tuple[bytes, bytes]] = {}
        self.parsed: dict = {}

    def __call__(self, overrides: list[str]) -> DictConfig:
        return self.cell(overrides)[0]

    def cell(self, overrides: list[str]) -> tuple[DictConfig, Callable[[], DictConfig], dict | None]:
        """(the cell's config without Hydra's node, a function that returns it with the node, its plain
        resolved values when they could be had without resolving the whole config, else None)."""
        if self.repo is None:
            cfg = self.compose(list(overrides))
            return cfg, lambda cfg=cfg: cfg, None
        for line in overrides:  # each distinct override is parsed once (Hydra's grammar: ~0.5 ms a parse)
            if line not in self.parsed:
                self.parsed[line] = self.parser.parse_overrides([line])[0]
        parsed = [self.parsed[line] for line in overrides]
        groups, values = [], []
        for o in parsed:
            if o.is_add() or o.is_delete() or o.is_force_add() or o.is_hydra_override() or o.package is not None:
                cfg = self.compose(list(overrides))
                return cfg, lambda cfg=cfg: cfg, None
            is_group = self.repo.group_exists(o.key_or_group) and not isinstance(o.value(), dict)
            (groups if is_group else values).append(o)
        key = tuple(o.input_line for o in groups)
        if key not in self.templates:
            import copy

            from omegaconf import open_dict

            full = self.compose(list(key))
            app = copy.deepcopy(full)  # Hydra's node is most of a config's nodes: cells are planned without it
            with open_dict(app):
                app.pop("hydra", None)
            plain = C.plain(app)
            literal = plain == {k: OmegaConf.to_container(app[k], resolve=False) if OmegaConf.is_config(app[k]) else app[k] for k in app}
            # a pickled copy loads 4x faster than a deepcopy; the plain template serves cells only when no value interpolates
            self.templates[key] = (pickle.dumps(full), pickle.dumps(app), pickle.dumps(plain) if literal else None)
        full, app, plain = self.templates[key]
        cfg = self._apply(app, parsed, values)
        return cfg, lambda: self._apply(full, parsed, values), self._plain(plain, cfg, values)

    @staticmethod
    def _plain(template: bytes | None, cfg: DictConfig, values: list) -> dict | None:
        """C.plain(cfg) without walking the whole config (the slowest step of planning a cell): the template's
        resolved values with the overridden keys read back from cfg (as the schema converted them). None when
        the template has interpolations, whose values an override could change."""
        if template is None:
            return None
        plain = pickle.loads(template)
        for o in values:
            path = o.key_or_group.split(".")
            node = plain
            for part in path[:-1]:
                node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
            value = OmegaConf.select(cfg, o.key_or_group)
            value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
            if isinstance(node, list):
                node[int(path[-1])] = value
            else:
                node[path[-1]] = value
        return plain

    @staticmethod
    def _apply(template: bytes, parsed: list, values: list) -> DictConfig:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
        from omegaconf import open_dict

        cfg = pickle.loads(template)
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        if "hydra" in cfg:
            with open_dict(cfg.hydra):
                cfg.hydra.overrides.task = [o.input_line for o in parsed]
                c = cfg.hydra.job.config.override_dirname
                cfg.hydra.job.override_dirname = get_overrides_dirname(overrides=parsed, kv_sep=c.kv_sep, item_sep=c.item_sep, exclude_keys=c.exclude_keys)
        return cfg


def plan(arguments: list[str], params: dict | None, compose: Callable[[list[str]], DictConfig], loader=None, progress: bool = False) -> list[Cell]:
    """Every cell of the grid, composed once and validated. Raises GridError (one line) on the first problem,
    composition errors included, and when two combinations compose the same cell (an axis a preset overrides). `progress` logs every 1,000 cells."""
    cells: list[Cell] = []
    seen: dict[str, list[str]] = {}
    first_twin = None
    try:
        grid = expand(arguments, params, loader)
    except GridError:
        raise
    except Exception as exc:  # override syntax, glob() over an unknown group
        raise GridError(one_line(exc)) from None
    composer = Composer(compose, loader)
    memo: dict = {}
    t0 = time.perf_counter()
    for i, overrides in enumerate(grid, 1):
        if progress and i % 1000 == 0:
            log.info(f"planned {i} of {len(grid)} cells ({time.perf_counter() - t0:.0f} s)")
        try:
            cfg, full, config = composer.cell(overrides)
        except Exception as exc:  # Hydra/OmegaConf: unknown group option, unconvertible value, ...
            raise GridError(explain(exc, compose)) from None
        try:
            config = config if config is not None else C.plain(cfg)
            view = C.attrs(config)
            check_cell(cfg, view, memo)
        except C.ConfigError as exc:
            raise GridError(f"{exc} (cell: {' '.join(overrides) or 'defaults'})") from None
        except Exception as exc:  # an interpolation that does not resolve, ...
            raise GridError(one_line(exc)) from None
        rid = C.run_id_of(config, identity.environment(config))
        if rid not in seen:
            seen[rid] = overrides
            cells.append(Cell(overrides, cfg, rid, full, view))
        elif first_twin is None:
            first_twin = (seen[rid], overrides)
    if not cells:
        raise GridError("the grid has zero cells")
    if first_twin is not None:
        a, b = (set(x) for x in first_twin)
        if all(o.split("=")[0].lstrip("+~") in _PLACEMENT for o in a ^ b):
            raise GridError(
                f"{' '.join(sorted(a - b))} and {' '.join(sorted(b - a))} are the same cell: where a cell runs (trainer.devices, num_nodes, "
                f"strategy) is not part of it (it gives the same record anywhere); drop that axis"
            )
        raise GridError(
            f"the grid's {len(grid)} combinations are only {len(cells)} distinct cells: {' '.join(sorted(b - a))} composes the same cell as "
            f"{' '.join(sorted(a - b))} (a preset or a fixed value sets that axis's key); drop the axis or what overrides it"
        )
    return cells


def check_cell(cfg: DictConfig, view: C.AttrDict | None = None, memo: dict | None = None) -> None:
    """Every check a cell must pass before it runs: schema values, trackers, sources, curation steps.
    `view` (C.attrs of the resolved config) makes the value checks fast; with `memo`, the source
    and step checks run once per distinct recipe and eval sets."""
    C.validate(view if view is not None else cfg)
    problem = tracking.check(cfg)
    if problem:
        raise C.ConfigError(problem)
    key = json.dumps([view["data"], view["eval"]["sets"]], sort_keys=True, default=str) if view is not None and memo is not None else None
    if key is not None and key in memo:
        return
    for s in list(cfg.data.sources) + list(cfg.eval.sets):
        check_source(s)
    check_steps(cfg.data, cfg.paths.cache_dir)
    if key is not None:
        memo[key] = True


def compose_grid(argv: list[str], base_only: bool = False, progress: bool = False) -> tuple[list[Cell], DictConfig]:
    """Compose and validate every cell named by a command line (Hydra overrides, `-m` for a sweep).
    Returns (cells, base config); with base_only, just the config of the fixed overrides (cells: []).
    Raises GridError (one line) on any problem."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    multirun = "-m" in argv or "--multirun" in argv
    args = [a for a in argv if a not in ("-m", "--multirun")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=C.CONF_DIR, version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            parsed = OverridesParser.create(config_loader=loader).parse_overrides(args)
            for o in parsed:
                check_axis(o)
            check_lists(parsed, multirun, getattr(loader, "repository", None), lambda o: compose("config", overrides=list(o)))
            fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
            try:
                base = compose("config", overrides=fixed, return_hydra_config=True)
            except Exception as exc:
                raise GridError(explain(exc, lambda o: compose("config", overrides=list(o)))) from None
            params = base.hydra.sweeper.get("params") if multirun else None
            if any(o.is_sweep_override() for o in parsed) and not multirun:
                raise GridError("a sweep (a,b values) needs -m/--multirun")
            cells = (
                [] if base_only else plan(args, dict(params or {}), lambda o: compose("config", overrides=list(o), return_hydra_config=True), loader, progress)
            )
    except UserError:
        raise
    except Exception as exc:  # Hydra/OmegaConf composition errors
        raise GridError(one_line(exc)) from None
    finally:
        GlobalHydra.instance().clear()
    return cells, base


def check_output(base: DictConfig) -> None:
    """The sweep folder (and the cache folder) can be written, before anything runs."""
    for key, path in (("paths.output_dir", sweep_dir(base)), ("paths.cache_dir", base.paths.cache_dir)):
        why = C.unwritable(path)
        if why:
            raise GridError(f"{key}: {why} (choose a folder you can write, e.g. {key}=./outputs)")


def sweep_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir) / cfg.sweep


def pending(cells: list[Cell]) -> list[Cell]:
    return [c for c in cells if not record.is_completed(sweep_dir(c.cfg) / c.run_id)]


def standard_lr(base: DictConfig) -> tuple[float, str]:
    """The sweep's stated standard LR and where it came from: `standard_lr`, else the base config's
    optim.lr (the value before any LR axis is swept); never guessed from the cells."""
    if base.get("standard_lr") is not None:
        return float(base.standard_lr), "standard_lr in the sweep config"
    return float(base.optim.lr), "optim.lr of the sweep's base config (set standard_lr=... to state another)"


# Keys a sweep states once (grid.json "fixed"): its budgets, eval sets, optimizer and trainer settings. The size's and the
# recipe's own definitions are left out: an edited model or recipe YAML supersedes its cells one by one (see write_grid).
_DEFINITIONS = ("model.", "data.name", "data.sources", "data.steps")
# Where a cell runs is not a stated setting either (nor part of a cell's identity: config.PLACEMENT), so a target on several
# devices may join a sweep whose proxies ran on one.
_PLACEMENT = tuple(f"trainer.{k}" for k in C.PLACEMENT)


def grid_settings(cells: list[Cell]) -> tuple[dict, list[str]]:
    """(fixed, swept): the stated identity keys with one value across the cells, and those that vary. Each top-level
    section (optim, trainer, eval, ...) is flattened once per distinct value, not once per cell (a 10,000-cell grid
    has a handful of distinct sections)."""
    variants: dict[str, set[str]] = {}
    for c in cells:
        ident = C.identity_of(c.view if c.view is not None else C.plain(c.cfg))
        ident.pop("model", None)  # definitions (_DEFINITIONS) are never stated settings: not serialised at all
        ident["data"] = {k: v for k, v in (ident.get("data") or {}).items() if f"data.{k}" not in _DEFINITIONS}
        for section, value in ident.items():
            variants.setdefault(section, set()).add(json.dumps(value, sort_keys=True, default=str))
    fixed: dict = {}
    swept: set[str] = set()
    for section, texts in variants.items():
        flat = [C.flatten({section: json.loads(t)}) for t in texts]
        keys = set().union(*flat)
        for k in keys:
            if k.startswith(_DEFINITIONS) or k in _PLACEMENT:
                continue
            vals = {json.dumps(f.get(k), sort_keys=True) for f in flat}
            if len(vals) == 1 and all(k in f for f in flat):
                fixed[k] = flat[0][k]
            else:
                swept.add(k)
    return fixed, sorted(swept)


def cell_key(c: Cell) -> list:
    """What the analysis tells cells apart by (size, recipe, lr, seed): a cell with another run id under the same key
    replaces the old one in grid.json (its YAML or data changed), whatever the order or spelling of its overrides."""
    v = c.view if c.view is not None else c.cfg
    return [str(v.model.name), str(v.data.name), float(v.optim.lr), int(v.seed)]


def read_grid(path: Path) -> dict:
    """A sweep's grid.json as a dict ({} when absent); a corrupt one is rebuilt from this plan with a warning."""
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("cells"), dict):
            raise TypeError("not an object with a cells object")
        return doc
    except (OSError, ValueError, TypeError) as exc:
        log.warning(f"{path}: unreadable ({type(exc).__name__}: {str(exc)[:120]}); rebuilding it from this grid")
        return {}


def check_grid(cells: list[Cell], base: DictConfig) -> dict:
    """grid.json as this command would leave it; GridError (one line) when the command would change what the sweep
    stated before: a fixed setting (trainer.max_tokens, eval sets, ...) to another value, or the standard LR
    stated as another value. Sweeping a key that was fixed, or adding values to an axis, is allowed. The standard LR
    taken implicitly from the base config's optim.lr (a rerun of one cell at another LR) never replaces a stated one."""
    path = sweep_dir(cells[0].cfg) / record.GRID
    doc = read_grid(path)
    name = str(cells[0].cfg.sweep)
    fixed, swept = grid_settings(cells)
    old_fixed, old_swept = doc.get("fixed") or {}, doc.get("swept") or []
    for k in sorted(set(old_fixed) & set(fixed)):
        if k not in swept and k not in old_swept and json.dumps(old_fixed[k], sort_keys=True) != json.dumps(fixed[k], sort_keys=True):
            raise GridError(
                f"sweep {name}: {k} is {old_fixed[k]!r} in {path}, this command makes it {fixed[k]!r}; a sweep's settings are "
                f"stated once (results of both would be averaged): use another sweep=NAME"
            )
    lr, source = standard_lr(base)
    old_lr = doc.get("standard_lr")
    if isinstance(old_lr, (int, float)) and not math.isclose(lr, old_lr, rel_tol=1e-9):
        if base.get("standard_lr") is not None:
            raise GridError(
                f"sweep {name}: standard_lr={lr:g} but {path} states {old_lr:g} ({doc.get('standard_lr_source')}); the standard LR is stated "
                f"once per sweep: use another sweep=NAME, or compare against {lr:g} with proxyscale report --standard-lr {lr:g}"
            )
        log.info(f"sweep {name}: the standard LR stays {old_lr:g} as {path} states it (this command's optim.lr={lr:g} is a cell's LR)")
        lr, source = float(old_lr), doc.get("standard_lr_source") or source
    known, keys = dict(doc.get("cells") or {}), dict(doc.get("keys") or {})
    new_keys = {c.run_id: cell_key(c) for c in cells}
    asked_keys = {json.dumps(k) for k in new_keys.values()}
    asked = {json.dumps(sorted(c.overrides)) for c in cells}  # grid.json files from before the keys: by overrides, in any order
    for rid in list(known):
        same = json.dumps(keys[rid]) in asked_keys if rid in keys else json.dumps(sorted(known[rid])) in asked
        if same and rid not in new_keys:
            known.pop(rid)
            keys.pop(rid, None)
    known.update({c.run_id: list(c.overrides) for c in cells})
    keys.update(new_keys)
    merged_fixed = {k: v for k, v in old_fixed.items() if k not in swept} | {k: v for k, v in fixed.items() if k not in old_swept}
    return {
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "sweep": name,
        "cells": known,
        "keys": keys,
        "fixed": merged_fixed,
        "swept": sorted(set(swept) | set(old_swept)),
        "standard_lr": lr,
        "standard_lr_source": source,
    }


def write_grid(cells: list[Cell], base: DictConfig) -> None:
    """Add the grid's cells to <sweep>/grid.json (the list `collect` checks for missing cells, with each cell's
    size, recipe, lr and seed), the sweep's fixed settings and its standard LR, which the report reads instead of
    guessing it. Raises GridError when the command would change what the sweep stated (check_grid)."""
    doc = check_grid(cells, base)
    record.atomic_write_text(sweep_dir(cells[0].cfg) / record.GRID, json.dumps(doc, indent=1, sort_keys=True))


def cost_table(cells: list[Cell], workers: int = 1, final: set[str] | frozenset = frozenset()) -> str:
    """One row per cell; cells in `final` (their record is final: a sweep skips them) show `final`
    and are left out of the totals."""
    rows = []
    total_s = total_f = 0.0
    for c in cells:
        cfg = c.view if c.view is not None else c.cfg
        k = budget.cost(cfg, workers)
        done = c.run_id in final
        if not done:
            total_s += k["est_seconds"]
            total_f += k["flops"]
        rows.append(
            (
                c.run_id,
                cfg.model.name,
                cfg.data.name,
                f"{cfg.optim.lr:g}",
                str(cfg.seed),
                _si(k["params"]),
                _si(k["tokens"]),
                str(k["steps"]),
                f"{k['flops']:.2e}",
                "final" if done else _duration(k["est_seconds"]),
            )
        )
    head = ("cell", "size", "recipe", "lr", "seed", "params", "tokens", "steps", "FLOPs", "est. CPU time")
    lines = [text_table(head, rows)]
    n_final = sum(c.run_id in final for c in cells)
    lines.append(
        f"{len(cells)} cells ({n_final} already final, {len(cells) - n_final} to run): {total_f:.2e} FLOPs, "
        f"about {_duration(total_s / max(1, workers))} with {workers} worker(s) on this machine"
    )
    return "\n".join(lines)


def ladder_table(cells: list[Cell]) -> str:
    """The size registry, one row per size (the cells differ only in model)."""
    rows = []
    for c in cells:
        cfg = c.view if c.view is not None else c.cfg
        m, k = cfg.model, budget.cost(cfg)
        rows.append(
            (m.name, str(m.n_layer), str(m.d_model), str(m.n_head), _si(k["params"]), _si(k["tokens"]), f"{k['flops']:.2e}", _duration(k["est_seconds"]))
        )
    head = ("size", "layers", "d_model", "heads", "params", "tokens", "FLOPs", "est. CPU time")
    return text_table(head, rows)


def text_table(head: tuple, rows: list[tuple]) -> str:
    """Left-aligned columns under a dashed rule: the CLI's and the benchmarks' tables."""
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * w for w in widths)), *map(line, rows)])


def _duration(s: float) -> str:
    for unit, div in (("y", 3.15e7), ("d", 86400), ("h", 3600), ("min", 60)):
        if s >= div:
            return f"{s / div:.1f} {unit}"
    return f"{s:.0f} s"


def _si(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(int(n))
