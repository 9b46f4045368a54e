"""Training cost of GDPD against Base-KD, measured in one process with alternating runs.

Two settings: the quick suite's (FCN-128 teacher -> FCN-64 student, truncated 40 % prefixes) and
the paper's (LSTM3-100 -> LSTM3-100, stretched prefixes). Random data of GunPoint's size (40 training
cases, batch 16, length 100), teacher outputs precomputed as the trainer's cache does; GDPD timed in
both stages (warm-up: prior losses; distillation: the DDIM chain).

Usage: python benchmarks/gdpd_cost.py [--epochs 20] [--repeats 5] [--threads 1]
Writes benchmarks/results/gdpd_cost/{results.json,summary.md}.
"""
import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from earlykd.distill import Batch, TeacherOutputs, build_method
from earlykd.models import build_model
from earlykd.prefix import make_prefix
from earlykd.train import batch_slices

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "quick (FCN-128 -> FCN-64, truncate, e=0.4)": (("fcn", 3, 128), ("fcn", 3, 64), "truncate"),
    "paper (LSTM3-100 -> LSTM3-100, stretch, e=0.4)": (("lstm", 3, 100), ("lstm", 3, 100), "stretch"),
}


def epoch_seconds(method: str, setting, epochs: int, stage: int) -> float:
    (t_arch, t_layers, t_hidden), (s_arch, s_layers, s_hidden), mode = setting
    torch.manual_seed(0)
    x, y = torch.randn(40, 1, 100), torch.arange(40) % 2
    teacher = build_model(t_arch, 1, 2, t_layers, t_hidden).eval()
    with torch.no_grad():
        out = teacher(x)
    cache = TeacherOutputs(out.logits, out.feature, out.hidden)
    student = build_model(s_arch, 1, 2, s_layers, s_hidden)
    distiller = build_method(method, student, cache.dims, warmup=1)
    opt = torch.optim.Adam(distiller.parameters(), 1e-3)
    xs = make_prefix(x, 0.4, mode)
    start = time.perf_counter()
    for _ in range(epochs):
        for idx in batch_slices(torch.randperm(40).numpy(), 16):
            _, losses = distiller.forward_train(Batch(xs[idx], y[idx], cache[idx]), stage)
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
    return (time.perf_counter() - start) / epochs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for name, setting in SETTINGS.items():
        kd, warm, chain = [], [], []
        for _ in range(a.repeats):  # alternate, so drift hits all three alike
            kd.append(epoch_seconds("kd", setting, a.epochs, 0))
            warm.append(epoch_seconds("gdpd", setting, a.epochs, 0))
            chain.append(epoch_seconds("gdpd", setting, a.epochs, 1))
        row = {"setting": name, "kd": statistics.median(kd), "gdpd_warmup": statistics.median(warm),
               "gdpd_distill": statistics.median(chain)}
        row["ratio_warmup"] = statistics.median(w / k for w, k in zip(warm, kd))
        row["ratio_distill"] = statistics.median(c / k for c, k in zip(chain, kd))
        row["ratio_two_stage"] = (row["ratio_warmup"] + row["ratio_distill"]) / 2
        rows.append(row)
        print(row, flush=True)
    out = ROOT / "benchmarks" / "results" / "gdpd_cost"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"epochs": a.epochs, "repeats": a.repeats, "threads": a.threads, "torch": torch.__version__,
            "machine": platform.machine()}
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# GDPD training cost against Base-KD ({a.repeats} alternating repeats of {a.epochs} epochs, "
             f"CPU, {a.threads} thread(s), torch {torch.__version__})", "",
             "| setting | Base-KD s/epoch | GDPD warm-up s/epoch | GDPD distillation s/epoch | ratio warm-up | "
             "ratio distillation | ratio over a 50/50 two-stage run |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['setting']} | {r['kd']:.4f} | {r['gdpd_warmup']:.4f} | {r['gdpd_distill']:.4f} | "
              f"{r['ratio_warmup']:.2f} | {r['ratio_distill']:.2f} | {r['ratio_two_stage']:.2f} |" for r in rows]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
