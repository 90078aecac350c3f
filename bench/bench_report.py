"""Benchmark of the collect and report path on a large synthetic sweep.

    .venv/bin/python bench/bench_report.py [--recipes 40 --sizes 5 --lrs 10 --seeds 5 --evals 3]

Writes one result.json per cell (default 40 recipes x 5 sizes x 10 LRs x 5 seeds = 10,000 records,
each with its config, a 5-point eval curve per eval set and a 20-point train curve, as a real cell
writes), then times
  collect   `proxyscale collect`'s work: read and check every record -> results.parquet + curves.parquet
            (best of 3; one worker process per core), side by side with the floor of any collector
            of JSON records: json.loads of every record in one process
  analysis  what `proxyscale report` does next: read results.parquet, every comparison (bootstrap 1000
            per size pair, 100 per proxy LR: the defaults), reduced-LR protocol, seed noise
  render    report.json + report.md + report.html with its figures
  import    `python -c "import proxyscale.report.build"` in a fresh interpreter (min of 5), and
            whether it imported torch
  scale     `proxyscale report --from-csv` in a fresh process on 5,000 recipes x 2 sizes and on the RegMix
            file (256 recipes x 13 metrics, ../shared/realdata), HTML and every figure included: seconds and
            peak RSS (the parent plus its drawing workers); RegMix also as the command itself, best of 3
Targets: collect <= 1 s on 10k records; import <= 0.3 s with no torch; 5,000 recipes < 30 s and < 1.5 GB;
RegMix < 5 s. Writes bench/results.json["report"].
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `proxyscale report` sets before numpy loads

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.common import RESULTS, save, table  # noqa: E402
from proxyscale import analysis, record  # noqa: E402
from proxyscale import collect as tables  # noqa: E402
from proxyscale.report import build, render  # noqa: E402


def synthetic(recipes: int, sizes: int, lrs: int, seeds: int, evals: int, rng_seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(rng_seed)
    names = [f"recipe{i:03d}" for i in range(recipes)]
    size_names = [f"s{i}" for i in range(sizes)]
    params = {s: int(1e5 * 2**i) for i, s in enumerate(size_names)}
    lr_grid = np.geomspace(1e-4, 3e-2, lrs)
    quality = rng.normal(scale=0.1, size=recipes)
    grid = np.array(np.meshgrid(np.arange(recipes), np.arange(sizes), np.arange(lrs), np.arange(seeds), np.arange(evals), indexing="ij")).reshape(5, -1)
    r, s, li, sd, e = grid
    best_lr = np.log10(3e-3) - 0.2 * s  # larger models prefer smaller LRs
    loss = 4.0 - 0.3 * s + quality[r] * (1 + 0.1 * s) + 0.15 * (np.log10(lr_grid[li]) - best_lr) ** 2 + 0.05 * e + rng.normal(scale=0.01, size=len(r))
    status = np.where(rng.random(len(r)) < 0.01, "diverged", "completed")
    cell = r * 10**6 + s * 10**4 + li * 10**2 + sd
    return pd.DataFrame(
        {
            "run_id": [f"c{c}" for c in cell],
            "sweep": "bench",
            "status": status,
            "size": np.array(size_names)[s],
            "params": np.array([params[x] for x in size_names])[s],
            "recipe": np.array(names)[r],
            "lr": lr_grid[li],
            "seed": sd,
            "tokens": 1000,
            "steps": 10,
            "wall_seconds": 1.0,
            "tokens_per_second": 1000.0,
            "flops_per_token": 1e5,
            "eval_set": np.array([f"eval{i}" for i in range(evals)])[e],
            "loss": np.where(status == "completed", loss, np.nan),
        }
    )


def write_records(df: pd.DataFrame, root: Path) -> int:
    """One result.json per cell of the synthetic table (plain writes: setup, not timed)."""
    from hydra import compose, initialize_config_dir

    from proxyscale import config as C

    with initialize_config_dir(config_dir=C.CONF_DIR, version_base="1.3"):
        base = C.plain(compose("config", overrides=["sweep=bench"]))
    from proxyscale.data import identity

    env = identity.environment(base)
    for _, cell in df.groupby("run_id", sort=False):
        first = cell.iloc[0]
        cfg = {
            **base,
            "seed": int(first["seed"]),
            "model": {**base["model"], "name": str(first["size"])},
            "data": {**base["data"], "name": str(first["recipe"])},
            "optim": {**base["optim"], "lr": float(first["lr"])},
        }
        rid = C.run_id_of(cfg, env)  # a record consistent with its config: collect rejects any other
        final = {str(e): float(v) for e, v in zip(cell["eval_set"], cell["loss"])}
        ok = first["status"] == "completed"
        curve = [{"step": k * 40, "tokens": k * 40 * 4096, "loss": {e: v + 0.5 / k for e, v in final.items()}} for k in range(1, 6)]
        rec = record.Record(
            run_id=rid,
            sweep="bench",
            status=str(first["status"]),
            size=str(first["size"]),
            params=int(first["params"]),
            recipe=str(first["recipe"]),
            lr=float(first["lr"]),
            seed=int(first["seed"]),
            tokens=819200,
            steps=200,
            final_loss=final if ok else {},
            eval_curve=curve if ok else [],
            train_curve=[{"step": k * 10, "loss": 5.0 - k * 0.05} for k in range(20)],
            wall_seconds=60.0,
            train_seconds=55.0,
            tokens_per_second=15000.0,
            flops_per_token=1e6,
            tokenizer="byte",
            config=cfg,
            versions={"torch": "2.13.0"},
            error=None if ok else "train loss blew up",
            eval_seconds=4.0,
            eval_sets=list(final),
            extra={"identity_env": env},
        )
        (root / rid).mkdir()
        (root / rid / record.RESULT).write_text(json.dumps(asdict(rec), indent=1, sort_keys=True))
    return df["run_id"].nunique()


def time_import(repeats: int = 5) -> tuple[float, float, bool]:
    code = "import time,sys; t=time.perf_counter(); import proxyscale.report.build; print(time.perf_counter()-t, 'torch' in sys.modules)"
    best, wall_best, torch = 1e9, 1e9, False
    for _ in range(repeats):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=HERE.parent, check=True).stdout.split()
        wall_best = min(wall_best, time.perf_counter() - t)
        best = min(best, float(out[0]))
        torch = torch or out[1] == "True"
    return best, wall_best, torch


PEAK = (
    "import os, resource, sys, time; t = time.perf_counter(); from proxyscale.report import build, render; "
    "build.run(csv=sys.argv[1], out=sys.argv[2]); workers = min(len(os.sched_getaffinity(0)), len(render.BUILDERS)); "
    "own, child = (resource.getrusage(w).ru_maxrss / 1024 for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)); "
    "print(time.perf_counter() - t, own + workers * child)"
)


def time_csv_report(csv: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak MB) of a whole --from-csv report in a fresh interpreter; the peak adds every drawing worker at its
    own largest size to the parent's (an upper bound: they are forked from it and share its pages)."""
    res = subprocess.run([sys.executable, "-c", PEAK, str(csv), str(out)], capture_output=True, text=True, cwd=HERE.parent, check=True)
    secs, mb = map(float, res.stdout.split()[-2:])
    return secs, mb


def time_cli(csv: Path, out: Path, runs: int = 3) -> list[float]:
    """Wall seconds of `proxyscale report --from-csv CSV --out DIR` as a user runs it (interpreter start included)."""
    cmd = [sys.executable, "-m", "proxyscale.cli", "report", "--from-csv", str(csv), "--out", str(out)]
    walls = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent, check=True)
        walls.append(round(time.perf_counter() - t, 2))
    return walls


def scale(tmp: Path, n: int = 5000) -> dict:
    rng = np.random.default_rng(0)
    q = rng.normal(size=n)
    pd.concat(
        [
            pd.DataFrame({"recipe": [f"r{i:05d}" for i in range(n)], "size": s, "metric": "loss", "value": 3 + sc * q + 0.3 * rng.normal(size=n)})
            for s, sc in (("1M", 1.0), ("60M", 0.8))
        ]
    ).to_csv(tmp / "big.csv", index=False)
    big_s, big_mb = time_csv_report(tmp / "big.csv", tmp / "big")
    out = {"scale_recipes": n, "scale_s": round(big_s, 2), "scale_peak_mb": round(big_mb), "target_scale_s": 30.0, "target_scale_mb": 1500}
    regmix = HERE.parent.parent / "shared" / "realdata" / "regmix_1m_60m.csv"
    if regmix.exists():
        _, rm_mb = time_csv_report(regmix, tmp / "regmix")
        walls = time_cli(regmix, tmp / "regmix")
        out.update(regmix_s=min(walls), regmix_runs_s=walls, regmix_peak_mb=round(rm_mb), target_regmix_s=5.0)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", type=int, default=40)
    p.add_argument("--sizes", type=int, default=5)
    p.add_argument("--lrs", type=int, default=10)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--evals", type=int, default=3)
    p.add_argument("--no-render", action="store_true", help="skip timing the figures")
    a = p.parse_args(argv if argv is not None or __name__ == "__main__" else [])  # (python -m bench: defaults)
    df = synthetic(a.recipes, a.sizes, a.lrs, a.seeds, a.evals)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bench"
        root.mkdir()
        cells = write_records(df, root)
        collect_s = []
        for _ in range(3):  # best of 3: the first one also competes with the writeback of 10k new files
            t0 = time.perf_counter()
            collected = tables.collect(root)
            tables.write(collected, root)
            collect_s.append(time.perf_counter() - t0)
        t = time.perf_counter()  # the floor of any JSON-record collector: decode every record, one process
        for path in root.glob(f"*/{record.RESULT}"):
            json.loads(path.read_bytes())
        json_floor = time.perf_counter() - t
        t1 = time.perf_counter()
        results, _ = build._load_sweep(root, root)
        long, sizes, counts, _ = analysis.prepare_sweep(results)
        rep = analysis.analyze(long, sizes)  # the defaults `proxyscale report` uses
        t2 = time.perf_counter()
        report = build._clean({"schema_version": 1, "source": {"kind": "sweep", "path": str(root)}, "status_counts": counts, "notes": [], **rep})
        build.write_json(report, root / "report.json")
        t3 = time.perf_counter()
        if not a.no_render:
            render.write(report, root)
        t4 = time.perf_counter()
        big = scale(Path(tmp))
    imp, imp_wall, torch = time_import()
    nums = {
        "records": cells,
        "rows": int(len(collected.results)),
        "recipes": a.recipes,
        "sizes": a.sizes,
        "lrs": a.lrs,
        "seeds": a.seeds,
        "eval_sets": a.evals,
        "comparisons": len(rep["comparisons"]),
        "collect_s": round(min(collect_s), 4),
        "collect_runs_s": [round(x, 3) for x in collect_s],
        "collect_us_per_record": round(1e6 * min(collect_s) / cells, 1),
        "json_floor_s": round(json_floor, 4),
        "ratio_collect_to_json_floor": round(min(collect_s) / json_floor, 3),
        "analysis_s": round(t2 - t1, 4),
        "json_s": round(t3 - t2, 4),
        "render_s": None if a.no_render else round(t4 - t3, 4),
        "import_s": round(imp, 4),
        "import_process_wall_s": round(imp_wall, 4),
        "import_pulls_torch": torch,
        "target_collect_s": 1.0,
        "target_import_s": 0.3,
        "ratio_collect": round(min(collect_s) / 1.0, 3),
        "ratio_import": round(imp / 0.3, 3),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        **big,
    }
    steps = [
        (f"collect: records -> parquet (best of 3, {os.cpu_count()} processes)", nums["collect_s"], 1.0),
        ("json.loads of every record, 1 process (floor)", json_floor, None),
        ("analysis (report's read + every comparison)", nums["analysis_s"], None),
        ("report.json", nums["json_s"], None),
        ("render md + html", nums["render_s"], None),
        ("import proxyscale.report.build", imp, 0.3),
        (f"report --from-csv, {big['scale_recipes']} recipes x 2 sizes (peak {big['scale_peak_mb']} MB)", big["scale_s"], 30.0),
    ]
    if "regmix_s" in big:
        steps.append((f"proxyscale report --from-csv RegMix 256 x 13, HTML, best of 3 (peak {big['regmix_peak_mb']} MB)", big["regmix_s"], 5.0))
    print(f"{cells} records, {nums['rows']} rows, {nums['comparisons']} comparisons")
    print(
        table(
            ("step", "seconds", "target", "ratio"),
            [
                (name, "-" if v is None else f"{v:.3f}", "-" if t is None else f"{t:.1f}", "" if t is None or v is None else f"{v / t:.2f}")
                for name, v, t in steps
            ],
        )
    )
    print(f"collect / json floor: {min(collect_s) / json_floor:.2f}")
    print(f"import pulls torch: {torch}; import process wall (incl. interpreter start): {imp_wall:.3f} s")
    print(f"{os.cpu_count()} CPUs, 1-minute load average {os.getloadavg()[0]:.2f} (timings inflate on a busy machine)")
    save("report", nums)
    print(f"wrote {RESULTS} [report]")
    return nums


if __name__ == "__main__":
    main()
