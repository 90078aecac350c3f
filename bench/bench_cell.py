"""Where a cell's time goes: one `proxyscale` cell in a fresh process, its CPU and wall seconds split by phase,
beside a bare PyTorch loop doing the same training and evals.

    .venv/bin/python -m bench bench_cell                      # debug and tiny at the demo's settings
    .venv/bin/python bench/bench_cell.py --size debug --repeats 3
    .venv/bin/python bench/bench_cell.py --baseline /tmp/base  # another checkout's cell, interleaved with this one's
    .venv/bin/python bench/bench_cell.py --variant trainer.compile=true  # this checkout with overrides, interleaved

A cell is `proxyscale grid=demo model=SIZE data=balanced seed=0 trainer.threads=1` (token caches built beforehand,
so the cell only opens them). The child process wraps the functions each phase runs in (an exclusive timer: a phase's
time excludes the phases nested in it) and reports CPU seconds (time.process_time: what a loaded machine inflates
least) and wall seconds per phase; `Lightning loop (rest of fit)` is what fit spends outside every named phase.
The bare loop is the floor: the same model, batches, AdamW, schedule and clipping, and the same eval passes
(no_grad forward over the same windows at eval.batch_size), in a plain loop in another fresh process.
With --baseline, both checkouts' cells run alternately (same settings, same caches) and their records' losses
are compared: a speed-up must leave them unchanged. --variant does the same for this checkout with extra overrides
(e.g. trainer.compile=true: its compile workers' CPU counts in `total with subprocesses`; the first compiled cell
fills a fresh TorchInductor cache, the later ones reuse it, as a sweep's cells do).
Merges the numbers into bench/results.json under "cell".
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SETTINGS = ["grid=demo", "data=balanced", "seed=0", "trainer.threads=1"]

# (module, attribute path, phase): the functions a phase runs in. Missing ones (another checkout) are skipped.
PHASES = [
    ("proxyscale.cli", "main", "compose + plan (Hydra, grid, run id)"),
    ("proxyscale.job.run", "run_cell", "cell bookkeeping (lock, config.yaml, logs)"),
    ("proxyscale.job.run", "train", "train() setup (rest)"),
    ("proxyscale.job.run", "_load_data", "open token caches"),
    ("proxyscale.job.run", "_null_baselines", "null baselines (cached)"),
    ("proxyscale.job.run", "usable_checkpoint", "train() setup (rest)"),
    ("proxyscale.job.module", "CausalLM.__init__", "build model"),
    ("proxyscale.job.run", "_trainer", "build Trainer"),
    ("lightning.pytorch.trainer.trainer", "Trainer.fit", "Lightning loop (rest of fit)"),
    ("lightning.pytorch.trainer.trainer", "Trainer.validate", "Lightning loop (rest of fit)"),
    ("proxyscale.job.module", "CausalLM.training_step", "train forward + loss"),
    ("lightning.pytorch.core.module", "LightningModule.log", "self.log (Lightning logging)"),
    ("lightning.pytorch.core.module", "LightningModule.backward", "train backward"),
    ("lightning.pytorch.core.module", "LightningModule.clip_gradients", "grad clip"),
    ("torch.optim.adamw", "AdamW.step", "optimizer (AdamW, zero_grad, LR schedule)"),
    ("lightning.pytorch.core.module", "LightningModule.optimizer_zero_grad", "optimizer (AdamW, zero_grad, LR schedule)"),
    ("torch.optim.lr_scheduler", "LambdaLR.step", "optimizer (AdamW, zero_grad, LR schedule)"),
    ("lightning.pytorch.loops.optimization.automatic", "Closure.__call__", "Lightning loop (rest of fit)"),
    ("proxyscale.job.module", "Monitor.on_train_batch_end", "Monitor callback"),
    ("lightning.pytorch.loops.evaluation_loop", "_EvaluationLoop.run", "eval loop (Lightning)"),
    ("proxyscale.job.module", "CausalLM.validation_step", "eval forward"),
    ("proxyscale.job.module", "CausalLM._gather", "eval gather + Monitor"),
    ("proxyscale.job.module", "Monitor.on_validation_epoch_end", "eval gather + Monitor"),
    ("lightning.pytorch.trainer.trainer", "Trainer.save_checkpoint", "checkpoint (save)"),
    ("os", "fsync", "fsync (checkpoints, record)"),
    ("proxyscale.job.run", "write_examples", "write record, examples, snippets"),
    ("proxyscale.job.run", "write_snippets", "write record, examples, snippets"),
    ("proxyscale.record", "write", "write record, examples, snippets"),
    ("proxyscale.job.run", "_drop_checkpoints", "write record, examples, snippets"),
]
TRAIN_STEP = ("train batches (StepBatches)", "train forward + loss", "self.log (Lightning logging)", "train backward", "grad clip")
TRAIN_STEP += ("optimizer (AdamW, zero_grad, LR schedule)", "Monitor callback")
EVAL = ("eval loop (Lightning)", "eval forward", "eval gather + Monitor")


class _Clock:
    """Exclusive CPU and wall seconds per phase: entering a phase pauses the one it is nested in."""

    def __init__(self):
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.stack: list[list] = []  # [phase, cpu at (re)start, wall at (re)start]

    def _stop_top(self, now_cpu, now_wall):
        if self.stack:
            name, c, w = self.stack[-1]
            self.cpu[name] = self.cpu.get(name, 0.0) + now_cpu - c
            self.wall[name] = self.wall.get(name, 0.0) + now_wall - w

    def enter(self, name):
        c, w = time.process_time(), time.perf_counter()
        self._stop_top(c, w)
        self.stack.append([name, c, w])

    def leave(self):
        c, w = time.process_time(), time.perf_counter()
        self._stop_top(c, w)
        self.stack.pop()
        if self.stack:
            self.stack[-1][1:] = [c, w]

    def wrap(self, fn, name):
        @functools.wraps(fn)
        def timed(*a, **k):
            self.enter(name)
            try:
                return fn(*a, **k)
            finally:
                self.leave()

        return timed


def _patch(clock: _Clock) -> None:
    import importlib

    for modname, attr, name in PHASES:
        mod = importlib.import_module(modname)
        *owner_path, leaf = attr.split(".")
        owner = mod
        for part in owner_path:
            owner = getattr(owner, part, None)
        if owner is None or not hasattr(owner, leaf):
            continue
        setattr(owner, leaf, clock.wrap(getattr(owner, leaf), name))
    from proxyscale.job import module

    inner = module.StepBatches.__iter__

    def batches(self):  # a generator: time each batch it makes
        it = inner(self)
        while True:
            clock.enter("train batches (StepBatches)")
            try:
                batch = next(it)
            except StopIteration:
                return
            finally:
                clock.leave()
            yield batch

    module.StepBatches.__iter__ = batches


def child_cell(checkout: str, out_json: str, args: list[str]) -> None:
    """Runs in the fresh process: imports, then the CLI on `args`, with every phase timed."""
    startup = time.process_time()
    sys.path.insert(0, checkout)
    c0, w0 = time.process_time(), time.perf_counter()
    import lightning  # noqa: F401
    import torch  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401

    import proxyscale.cli
    import proxyscale.job.module
    import proxyscale.job.run  # noqa: F401

    clock = _Clock()
    clock.cpu["interpreter start"], clock.wall["interpreter start"] = startup, 0.0
    clock.cpu["imports (torch, Lightning, transformers, proxyscale)"] = time.process_time() - c0
    clock.wall["imports (torch, Lightning, transformers, proxyscale)"] = time.perf_counter() - w0
    _patch(clock)
    try:
        proxyscale.cli.main(args)
    except SystemExit as exc:
        if exc.code:
            raise
    total = time.process_time()
    Path(out_json).write_text(json.dumps({"cpu": clock.cpu, "wall": clock.wall, "total_cpu": total}))


def child_bare(checkout: str, out_json: str, args: list[str]) -> None:
    """The floor, in a fresh process: the cell's model, batches, optimizer, schedule, clipping and eval passes in a plain loop."""
    sys.path.insert(0, checkout)
    import torch
    import torch.nn.functional as F
    from hydra import compose, initialize_config_dir

    from proxyscale import budget
    from proxyscale.config import CONF_DIR
    from proxyscale.job import optim
    from proxyscale.job.module import CausalLM, eval_windows, train_loader
    from proxyscale.job.run import _load_data

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[a for a in args if not a.startswith("sweep=")])
    torch.set_num_threads(int(cfg.trainer.threads))
    torch.set_flush_denormal(True)
    data = _load_data(cfg)
    steps, _ = budget.plan_steps(cfg, data.vocab_size)
    torch.manual_seed(cfg.seed)
    module = CausalLM(cfg, data.vocab_size, steps, list(data.evals))
    o = optim.configure(module.parameters(), cfg.optim, steps)
    opt, sched = o["optimizer"], o["lr_scheduler"]["scheduler"]
    windows = [eval_windows(t, cfg.trainer.seq_len) for t in data.evals.values()]
    train = evals = 0.0

    def loss_of(batch, reduction="mean"):
        logits = module.net(input_ids=batch[:, :-1]).logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1), reduction=reduction)

    c = time.process_time()
    for step, batch in enumerate(train_loader(data.pool, cfg, steps), start=1):
        loss_of(batch).backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.optim.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % cfg.eval.every_n_steps == 0 or step == steps:
            now = time.process_time()
            train += now - c
            module.eval()
            with torch.no_grad():
                for w in windows:
                    for k in range(0, len(w), cfg.eval.batch_size):
                        loss_of(w[k : k + cfg.eval.batch_size], "none").sum()
            module.train()
            c = time.process_time()
            evals += c - now
    train += time.process_time() - c
    Path(out_json).write_text(json.dumps({"train_cpu": train, "eval_cpu": evals, "steps": steps}))


def _child(kind: str, checkout: Path, args: list[str], env: dict | None = None) -> dict:
    """A fresh process's phases, plus the CPU seconds of its whole process tree (compile workers included)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [sys.executable, str(Path(__file__).resolve()), f"--child-{kind}", str(checkout), f.name, "--", *args]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(checkout), **(env or {})})
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
        out = json.loads(Path(f.name).read_text())
        out["tree_cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return out


def _record_losses(out: Path, sweep: str) -> dict:
    (rec,) = (out / sweep).glob("*/result.json")
    doc = json.loads(rec.read_text())
    return {"run_id": doc["run_id"], "eval_curve": doc["eval_curve"], "train_curve": doc["train_curve"]}


def _breakdown(runs: list[dict]) -> dict[str, dict[str, float]]:
    names = list(dict.fromkeys(n for r in runs for n in r["cpu"]))
    return {n: {k: statistics.median(r[k].get(n, 0.0) for r in runs) for k in ("cpu", "wall")} for n in names}


def _print_breakdown(size: str, runs: list[dict], bare: dict | None) -> dict:
    from bench.common import table

    phases = _breakdown(runs)
    total = statistics.median(r["total_cpu"] for r in runs)
    rows = [(n, f"{v['cpu']:.2f}", f"{100 * v['cpu'] / total:.1f}%", f"{v['wall']:.2f}") for n, v in sorted(phases.items(), key=lambda kv: -kv[1]["cpu"])]
    step = sum(phases.get(n, {}).get("cpu", 0.0) for n in TRAIN_STEP) + phases.get("Lightning loop (rest of fit)", {}).get("cpu", 0.0)
    ev = sum(phases.get(n, {}).get("cpu", 0.0) for n in EVAL)
    rows.append(("total (process CPU)", f"{total:.2f}", "100%", ""))
    tree = statistics.median(r["tree_cpu"] for r in runs)
    rows.append(("total with subprocesses", f"{tree:.2f}", "", ""))
    print(f"\n{size}: median of {len(runs)} cell(s), CPU s per phase (exclusive)")
    print(table(("phase", "CPU s", "share", "wall s"), rows))
    out = {"total_cpu_s": total, "tree_cpu_s": tree, "per_cell_tree_cpu_s": [r["tree_cpu"] for r in runs], "train_steps_cpu_s": step, "eval_cpu_s": ev}
    out["phases"] = phases
    if bare:
        out["bare_train_cpu_s"], out["bare_eval_cpu_s"] = bare["train_cpu"], bare["eval_cpu"]
        print(
            f"training steps (incl. Lightning's loop) {step:.2f} s against a bare loop's {bare['train_cpu']:.2f} s "
            f"({bare['train_cpu'] / step:.2f} of its speed); evals {ev:.2f} s against {bare['eval_cpu']:.2f} s bare"
        )
    return out


def main(sizes=("debug", "tiny"), repeats: int = 1, baseline: str | None = None, variant: tuple[str, ...] = ()) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_cell_") as tmp:
        tmp = Path(tmp)
        common = [*SETTINGS, f"paths.output_dir={tmp / 'out'}", f"paths.cache_dir={tmp / 'cache'}"]
        env = {"TORCHINDUCTOR_CACHE_DIR": str(tmp / "inductor")}  # (a compiled variant starts cold, as a fresh machine does)
        # the caches, built once (a cell here only opens them): a zero-step cell of the same recipe
        _child("cell", ROOT, [*common, "model=debug", "sweep=warm", "trainer.max_tokens=4096", "eval.every_n_steps=1"])
        arms = {"this": (ROOT, [])}
        if baseline:
            arms["baseline"] = (Path(baseline).resolve(), [])
        if variant:
            arms[" ".join(variant)] = (ROOT, list(variant))
        for size in sizes:
            runs, losses, bares = {k: [] for k in arms}, {}, []
            for i in range(repeats):
                for k, (path, extra) in arms.items():  # interleaved, the bare loop too: a noisy machine hits them alike
                    sweep = f"arm{list(arms).index(k)}_{size}_{i}"
                    runs[k].append(_child("cell", path, [*common, f"model={size}", f"sweep={sweep}", *extra], env))
                    losses[k] = _record_losses(tmp / "out", sweep)
                bares.append(_child("bare", ROOT, [*common, f"model={size}"]))
            bare = {k: statistics.median(b[k] for b in bares) for k in ("train_cpu", "eval_cpu")}
            results[size] = {"this": _print_breakdown(size, runs["this"], bare)}
            for k in list(arms)[1:]:
                results[size][k] = _print_breakdown(f"{size} ({k})", runs[k], None)
                same = losses["this"] == losses[k]
                a, b = results[size]["this"]["tree_cpu_s"], results[size][k]["tree_cpu_s"]
                pairs = zip(losses["this"]["eval_curve"], losses[k]["eval_curve"])
                diff = max(abs(x - y) for p, q in pairs for x, y in zip(p["loss"].values(), q["loss"].values()))
                print(f"{size}: {a:.1f} CPU s per cell here, {b:.1f} with {k} ({b / a:.2f}x); records identical: {same} (eval losses differ <= {diff:.1e})")
                results[size][k]["same_losses"], results[size][k]["max_eval_loss_diff"] = same, diff
    from bench.common import save

    save("cell", results)
    return results


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("--child-cell", "--child-bare"):
        checkout, out_json, args = sys.argv[2], sys.argv[3], sys.argv[5:]
        (child_cell if sys.argv[1] == "--child-cell" else child_bare)(checkout, out_json, args)
        sys.exit(0)
    sys.path.insert(0, str(ROOT))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", action="append", help="model size (repeatable; default debug and tiny)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--baseline", help="another checkout (e.g. `git worktree add /tmp/base main`): its cells run interleaved with these")
    p.add_argument("--variant", nargs="+", default=(), help="overrides for a third arm of this checkout's cells (e.g. trainer.compile=true)")
    a = p.parse_args()
    main(tuple(a.size or ("debug", "tiny")), a.repeats, a.baseline, tuple(a.variant))
