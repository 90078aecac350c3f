"""Peak memory per size at the demo's batch (32 x 128, fp32, AdamW), measured in a fresh process
per size for the rungs that train a step in under a minute on 2 cores. Larger rungs are modelled:
16 bytes per parameter (weights, grads, two Adam moments) + activations proportional to
n_layer x d_model x batch x seq (coefficient and process floor fitted to the measured rungs); the
table says which is which. The last column answers: does this size fit a 24 GiB machine?"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from bench.common import save, table
from proxyscale.budget import ladder, n_params

MEASURED = ("debug", "tiny", "mini", "small", "base", "20m", "60m")
MACHINE_GIB = 24

_CHILD = """
import json, resource, sys, torch
from hydra import compose, initialize_config_dir
from proxyscale.config import CONF_DIR
from proxyscale.job.module import CausalLM
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
    sizes = ladder()
    rows, out, act, rest = [], {}, [], []

    def activations(m) -> float:
        return m.n_layer * m.d_model * 32 * 128

    for name in MEASURED:
        r = subprocess.run([sys.executable, "-c", _CHILD, name], capture_output=True, text=True, timeout=900)
        got = json.loads(r.stdout.strip().splitlines()[-1])
        p = n_params(sizes[name], 257)
        out[name] = {"params": p, "peak_gib": got["peak_kib"] / 2**20, "source": "measured"}
        act.append(activations(sizes[name]))
        rest.append(got["peak_kib"] * 1024 - 16 * p)
    per_act, floor = np.polyfit(act, rest, 1)  # bytes per activation unit, process floor (bytes)
    for name, m in sizes.items():
        if name not in out:
            p = n_params(m, 257)
            out[name] = {"params": p, "peak_gib": (floor + 16 * p + per_act * activations(m)) / 2**30, "source": "modelled"}
    largest = max((v["params"], k) for k, v in out.items() if v["peak_gib"] < MACHINE_GIB * 0.9)[1]
    for name, v in sorted(out.items(), key=lambda kv: kv[1]["params"]):
        rows.append((name, f"{v['params']:,}", f"{v['peak_gib']:.2f}", v["source"], "yes" if v["peak_gib"] < MACHINE_GIB * 0.9 else "no"))
    print(table(("size", "params", "peak GiB", "how", f"fits {MACHINE_GIB} GiB"), rows))
    print(
        f"model: 16 bytes/param + {per_act:.0f} bytes x n_layer x d_model x batch x seq + {floor / 2**30:.2f} GiB; "
        f"largest size that trains here at the demo batch: {largest}"
    )
    save("memory", {"sizes": out, "bytes_per_activation_unit": per_act, "floor_gib": floor / 2**30, "largest_fitting": largest})
    return out


if __name__ == "__main__":
    main()
