"""Trainer overhead: earlykd's seconds per epoch against the bare PyTorch loop
(shared/tools/bare_loop.py), same model, data, batch size and epochs, alternating runs.

Usage: python benchmarks/trainer_overhead.py [--epochs 100] [--repeats 3] [--bare ../shared/tools/bare_loop.py]
Writes benchmarks/results/trainer_overhead/{results.json,summary.md}.
"""
import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def bare(script: str, dataset: str, epochs: int, batch: int, arch: str) -> float:
    out = subprocess.run([sys.executable, script, dataset, str(epochs), str(batch), arch],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"s_per_epoch=([0-9.]+)", out).group(1))


def ours(dataset: str, epochs: int, batch: int, arch: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "earlykd.cli", "teacher", "--data", dataset, "--arch", arch,
                        "--epochs", str(epochs), "--batch-size", str(batch), "--no-progress", "--out", f"{tmp}/run",
                        # one training run with a validation pass per epoch, on as many threads as the bare loop
                        "--select", "acc_loss", "--threads", str(torch.get_num_threads())],
                       capture_output=True, text=True, check=True)
        return json.loads(Path(f"{tmp}/run/run.json").read_text())["seconds_per_epoch"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dataset", default="GunPoint")
    ap.add_argument("--bare", default=str(ROOT.parent / "shared" / "tools" / "bare_loop.py"))
    a = ap.parse_args()
    rows = []
    for arch, batch in (("lstm", 64), ("lstm", 16), ("fcn", 16)):
        pairs = [(bare(a.bare, a.dataset, a.epochs, batch, arch), ours(a.dataset, a.epochs, batch, arch))
                 for _ in range(a.repeats)]
        ratios = [o / b for b, o in pairs]
        rows.append({"arch": arch, "batch": batch, "bare_s_per_epoch": [b for b, _ in pairs],
                     "earlykd_s_per_epoch": [o for _, o in pairs], "ratio_median": statistics.median(ratios)})
        print(rows[-1], flush=True)
    out = ROOT / "benchmarks" / "results" / "trainer_overhead"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": a.dataset, "epochs": a.epochs, "repeats": a.repeats, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "machine": platform.machine(), "python": platform.python_version()}
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# Trainer overhead vs the bare loop ({a.dataset}, {a.epochs} epochs, {a.repeats} alternating pairs)",
             "", f"CPU, {meta['threads']} torch threads, torch {meta['torch']}. Target: ratio <= 1.1.", "",
             "| arch | batch | bare s/epoch (median) | earlykd s/epoch (median) | ratio (median of pairs) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['batch']} | {statistics.median(r['bare_s_per_epoch']):.4f} | "
                     f"{statistics.median(r['earlykd_s_per_epoch']):.4f} | {r['ratio_median']:.3f} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
