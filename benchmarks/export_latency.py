"""Forward-pass latency of each registered architecture, torch against onnxruntime, one CPU thread each.

Default model sizes, one input channel, 2 classes, L = 100 steps (a whole series, or a truncate
prefix at e = 1), batch 1 and batch 32. Both engines compute logits and probabilities from the same
exported graph's inputs. Runs are interleaved: each round times one block of calls per (architecture,
batch, engine) in a shuffled order, so load from other processes spreads over all cells; the table
reports the median over rounds of the per-call time, with its quartiles.

    python benchmarks/export_latency.py [--rounds 15] [--out benchmarks/results/export]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from earlykd.export import OUTPUTS, _Graph, export_model, parity
from earlykd.models import ARCHITECTURES, build_model

BATCHES, STEPS, BLOCK_SECONDS = (1, 32), 100, 0.05


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def engines(arch: str, folder: Path):
    torch.manual_seed(0)
    model = build_model(arch, 1, 2).eval()
    path = export_model(model, folder / f"{arch}.onnx", 1, STEPS, dynamic_steps=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    graph = _Graph(model)

    def run_torch(x):
        with torch.no_grad():
            graph(torch.from_numpy(x))

    def run_onnx(x):
        session.run(list(OUTPUTS), {"series": x})

    diff = parity(model, path, [(b, 1, STEPS) for b in BATCHES])
    return {"torch": run_torch, "onnxruntime": run_onnx}, diff


def block(fn, x, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn(x)
    return (time.perf_counter() - start) / calls * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", default="benchmarks/results/export")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()
    cells, diffs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in sorted(ARCHITECTURES):
            fns, diffs[arch] = engines(arch, Path(tmp))
            for batch in BATCHES:
                x = rng.standard_normal((batch, 1, STEPS)).astype(np.float32)
                for engine, fn in fns.items():
                    for _ in range(3):
                        fn(x)  # warm-up
                    one = block(fn, x, 3) / 1000
                    cells[(arch, batch, engine)] = (fn, x, max(1, int(BLOCK_SECONDS / max(one, 1e-6))), [])
        keys = list(cells)
        for _ in range(a.rounds):
            for i in rng.permutation(len(keys)):
                fn, x, calls, times = cells[keys[i]]
                times.append(block(fn, x, calls))
    load_after = os.getloadavg()
    rows = []
    for (arch, batch, engine), (_, _, calls, times) in cells.items():
        q25, med, q75 = np.percentile(times, [25, 50, 75])
        rows.append({"arch": arch, "batch": batch, "engine": engine, "median_ms": round(med, 4),
                     "q25_ms": round(q25, 4), "q75_ms": round(q75, 4), "calls_per_block": calls,
                     "rounds": a.rounds, "parity_max_abs_diff": f"{diffs[arch]:.2e}"})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "latency.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads_per_engine": 1,
               "load_average_1_5_15_before": [round(v, 2) for v in load_before],
               "load_average_1_5_15_after": [round(v, 2) for v in load_after],
               "torch": torch.__version__, "onnxruntime": ort.__version__, "python": platform.python_version()}
    (out / "machine.json").write_text(json.dumps(machine, indent=1) + "\n")
    print(table(rows))
    print(json.dumps(machine))


def table(rows: list[dict]) -> str:
    """Markdown: one line per architecture and batch, torch and onnxruntime side by side."""
    by = {(r["arch"], r["batch"], r["engine"]): r for r in rows}
    lines = ["| arch | batch | torch ms (q25-q75) | onnxruntime ms (q25-q75) | torch / onnxruntime | parity |",
             "|---|---|---|---|---|---|"]
    for arch, batch in sorted({(r["arch"], r["batch"]) for r in rows}):
        t, o = by[(arch, batch, "torch")], by[(arch, batch, "onnxruntime")]
        lines.append(f"| {arch} | {batch} | {t['median_ms']:.3f} ({t['q25_ms']:.3f}-{t['q75_ms']:.3f}) | "
                     f"{o['median_ms']:.3f} ({o['q25_ms']:.3f}-{o['q75_ms']:.3f}) | "
                     f"{t['median_ms'] / o['median_ms']:.2f} | {t['parity_max_abs_diff']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
