"""GDPD figures the generic report does not give: gap closed, cost against Base-KD, inference latency.

Usage: python benchmarks/gdpd_extras.py [DIR]   (DIR = a sweep directory, default benchmarks/results/quick)
Reads DIR/runs.csv (from `earlykd report DIR`) and writes DIR/gdpd_extras.md.
"""
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from earlykd.report.tables import per_dataset_means, split, teacher_scores

ROOT = Path(__file__).resolve().parents[1]
MIN_GAP = 0.02  # below this the teacher is not better than Base and the ratio means nothing


def gap_closed(df: pd.DataFrame) -> list[str]:
    students, teachers = split(df)
    teacher = teacher_scores(teachers)
    lines = ["| earliness | Teacher | Base | Base-KD | GDPD | gap closed by KD | gap closed by GDPD |", "|---|---|---|---|---|---|---|"]
    for e in sorted(students.earliness.unique()):
        means = per_dataset_means(students, e)
        t = teacher.reindex(means.index).mean()
        b, k, g = means["base"].mean(), means["kd"].mean(), means["gdpd"].mean()
        closed = (lambda m: f"{(m - b) / (t - b):+.2f}") if t - b >= MIN_GAP else (lambda m: "n/a")
        lines.append(f"| {e:g} | {t:.3f} | {b:.3f} | {k:.3f} | {g:.3f} | {closed(k)} | {closed(g)} |")
    return lines


def cost(df: pd.DataFrame) -> list[str]:
    key = ["dataset", "earliness", "seed"]
    students = df[df.method != "teacher"]
    kd = students[students.method == "kd"].set_index(key)
    lines = ["| method | median s/epoch | median ratio to Base-KD (paired runs) | median peak RSS (MiB) |", "|---|---|---|---|"]
    for method, part in students.groupby("method"):
        ratio = (part.set_index(key).seconds_per_epoch / kd.seconds_per_epoch).median()
        lines.append(f"| {method} | {part.seconds_per_epoch.median():.4f} | {ratio:.2f} | {part.peak_memory_mb.median():.0f} |")
    return lines


def latency(root: Path, rounds: int = 200) -> list[str]:
    """Base and GDPD students timed alternately (one forward each per round), so drift hits both alike."""
    from earlykd.train import load_model
    models = {}
    for method in ("base", "gdpd"):
        run = next(iter(sorted((root / "runs").glob(f"{method}-OSULeaf-e0.4-*"))), None)
        if run is not None:
            models[method] = load_model(run / "model.safetensors")[0]
    if not models:   # a fresh clone: the run directories are not in git
        sys.exit(f"error: no base or gdpd OSULeaf e 0.4 run in {root / 'runs'}; the latency table needs the sweep's "
                 "run directories (train them with the sweep's command)")
    x, times = torch.randn(256, 1, 40), {m: [] for m in models}
    with torch.no_grad():
        for _ in range(rounds + 10):
            for method, model in models.items():
                start = time.perf_counter()
                model(x)
                times[method].append(time.perf_counter() - start)
    lines = [f"| student | parameters | ms per forward (batch 256, median of {rounds} alternating rounds) |",
             "|---|---|---|"]
    for method, model in models.items():
        median = sorted(times[method][10:])[rounds // 2]
        lines.append(f"| {method} | {sum(p.numel() for p in model.parameters())} | {1000 * median:.2f} |")
    return lines


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks" / "results" / "quick"
    df = pd.read_csv(root / "runs.csv")
    text = ["# GDPD: gap closed, cost, inference", "",
            "Gap closed = (method - Base) / (Teacher - Base) on AUC-PRC averaged over datasets; n/a where the",
            f"teacher is less than {MIN_GAP} above Base.", ""]
    text += gap_closed(df) + ["", "Training cost, from the same sweep (ratios paired by dataset, earliness, seed):", ""]
    text += cost(df) + ["", "Inference: the GDPD student is a plain student (OSULeaf, e = 0.4, truncate, CPU):", ""]
    text += latency(root)
    (root / "gdpd_extras.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
