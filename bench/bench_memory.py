"""Peak memory per size at the demo's batch (32 x 128, fp32, AdamW), measured in a fresh process
per size for the rungs that train a step in under a minute on 2 cores; the larger rungs use the
closed form fitted to them (bytes per parameter + a fixed process floor), and the table says which
is which. The last column answers: does this size fit a 24 GiB machine?"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from proxyscale.model import n_params, registry

from bench.common import save, table

MEASURED = ("debug", "tiny", "mini", "small", "base", "20m", "60m")
MACHINE_GIB = 24

_CHILD = """
import json, resource, sys, torch
from hydra import compose, initialize_config_dir
from proxyscale.config import CONF_DIR
from proxyscale.train import CausalLM
torch.set_num_threads(2)
with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
    cfg = compose("config", overrides=[f"model={sys.argv[1]}"])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
m = CausalLM(cfg, 257, 10, [])
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
x = torch.randint(0, 257, (cfg.trainer.batch_size, cfg.trainer.seq_len + 1))
for _ in range(2):
    m._loss(x).backward(); opt.step(); opt.zero_grad()
print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "floor_kib": base}))
"""


def main() -> dict:
    sizes = registry()
    rows, out, fit = [], {}, []
    for name in MEASURED:
        r = subprocess.run([sys.executable, "-c", _CHILD, name], capture_output=True, text=True, timeout=900)
        got = json.loads(r.stdout.strip().splitlines()[-1])
        p = n_params(sizes[name], 257)
        out[name] = {"params": p, "peak_gib": got["peak_kib"] / 2**20, "source": "measured"}
        fit.append((p, got["peak_kib"] / 2**20))
    slope, floor = np.polyfit([p for p, _ in fit], [g for _, g in fit], 1)
    for name, m in sizes.items():
        if name not in out:
            p = n_params(m, 257)
            out[name] = {"params": p, "peak_gib": floor + slope * p, "source": "fitted"}
    largest = max((v["params"], k) for k, v in out.items() if v["peak_gib"] < MACHINE_GIB * 0.9)[1]
    for name, v in sorted(out.items(), key=lambda kv: kv[1]["params"]):
        rows.append((name, f"{v['params']:,}", f"{v['peak_gib']:.2f}", v["source"], "yes" if v["peak_gib"] < MACHINE_GIB * 0.9 else "no"))
    print(table(("size", "params", "peak GiB", "how", f"fits {MACHINE_GIB} GiB"), rows))
    print(f"fit: {slope * 2**30:.1f} bytes/param + {floor:.2f} GiB; largest size that trains here at the demo batch: {largest}")
    save("memory", {"sizes": out, "bytes_per_param": slope * 2**30, "floor_gib": floor, "largest_fitting": largest})
    return out


if __name__ == "__main__":
    main()
