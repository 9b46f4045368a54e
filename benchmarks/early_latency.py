"""Decision latency of an anytime student per new time step, one series at a time, through
`EarlyClassifier.update_predict` (the streaming path: view of the samples so far, forward pass at a
checkpoint, policy step). The policy is set never to stop early, so every checkpoint is paid for.

    python benchmarks/early_latency.py RUN_DIR [SERIES]

Prints the mean, 99th percentile and maximum milliseconds per time step, and the mean per checkpoint.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from earlykd import EarlyClassifier, runs


def measure(run_dir: str, series: int = 20) -> dict:
    torch.set_num_threads(1)
    est = EarlyClassifier.from_run(run_dir, policy="threshold")
    est.decider_.policy.params.update(probability=2.0)  # never confident: every checkpoint runs
    cfg, _ = runs.read_run(run_dir)
    data = runs.load_prepared(cfg["data"])
    X = np.stack(data.series["test"][:series])
    per_step, per_checkpoint = [], []
    for x in X:
        est.reset_state_info()
        done = 0
        for n in range(1, x.shape[-1] + 1):
            start = time.perf_counter()
            est.update_predict(x[None, :, :n])
            ms = (time.perf_counter() - start) * 1000
            per_step.append(ms)
            if est.state_info["next"] > done:
                per_checkpoint.append(ms)
                done = est.state_info["next"]
    steps = np.array(per_step)
    return {"run": str(run_dir), "series": len(X), "time_steps": int(X.shape[-1]),
            "checkpoints": len(est.decider_.levels), "mean_ms_per_step": float(steps.mean()),
            "p99_ms_per_step": float(np.percentile(steps, 99)), "max_ms_per_step": float(steps.max()),
            "mean_ms_per_checkpoint": float(np.mean(per_checkpoint)), "threads": torch.get_num_threads()}


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20), indent=1))
