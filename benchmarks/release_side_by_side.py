"""earlykd on the work the GDPD release was run on: GunPoint, e = 0.4, seed 1, InceptionTime -> InceptionTime,
100 epochs, batch 64, warm-up 50, lambda 1, stretch. Base, Base-KD, GDPD alone, GDPD + KD (gdpd_kd), and
GDPD scored by a separate head (hint_head_own = 0), all from one teacher, one thread.

Usage: python benchmarks/release_side_by_side.py [OUT]   (default benchmarks/results/release_side_by_side)
Writes OUT/tables.md: test AUC-PRC, best epoch, seconds per epoch, and for the two-stage runs the validation
loss just before and after the warm-up, at its best, and GDPD's mean alpha and hint distance per stage.
"""
import sys
import time
from pathlib import Path

import torch

from earlykd import api

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = dict(data="GunPoint", arch="inception", epochs=100, batch_size=64, seed=1, mode="stretch",
                threads=1, progress=False)
STUDENTS = [("base", "base", {}), ("kd", "kd", {}), ("gdpd", "gdpd", {}), ("gdpd_kd", "gdpd_kd", {}),
            ("gdpd_own_head_off", "gdpd", {"hint_head_own": 0})]


def val_losses(history: list[dict]) -> list[float]:
    return [row["val_loss"] for row in history]


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks" / "results" / "release_side_by_side"
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    started = time.perf_counter()
    teacher = api.train_teacher(**SETTINGS, out=out / "runs" / "teacher")
    rows = [("teacher (5-fold CV epochs, refit)", teacher)]
    for label, method, options in STUDENTS:
        run = api.distill(teacher, method=method, earliness=0.4, warmup=50, options=options,
                          out=out / "runs" / label, **{k: v for k, v in SETTINGS.items() if k != "data"})
        rows.append((label, run))
    lines = ["| run | test AUC-PRC | accuracy | best epoch | s/epoch |", "|---|---|---|---|---|"]
    for label, run in rows:
        r = run.record
        lines.append(f"| {label} | {r['test']['auc_prc']:.3f} | {r['test']['accuracy']:.3f} | {r['best_epoch']} | "
                     f"{r['seconds_per_epoch']:.3f} |")
    lines += ["", "Validation loss (CE of the student on validation prefixes) around the warm-up (epoch 50):", "",
              "| run | epoch 49 | epoch 50 | epoch 55 | epoch 99 | lowest after 50 (epoch) | mean alpha | "
              "hint distance (first / last epoch of stage 2) |", "|---|---|---|---|---|---|---|---|"]
    for label, run in rows[1:]:
        h = run.record["history"]
        v = val_losses(h)
        after = min(range(50, len(v)), key=lambda e: v[e])
        alpha = [row["alpha"] for row in h if "alpha" in row]
        dist = [row["hint_distance"] for row in h if "hint_distance" in row]
        lines.append(f"| {label} | {v[49]:.3f} | {v[50]:.3f} | {v[55]:.3f} | {v[99]:.3f} | {v[after]:.3f} ({after}) | "
                     + (f"{sum(alpha) / len(alpha):.3f} | {dist[0]:.3f} / {dist[-1]:.3f} |" if alpha else "- | - |"))
    lines += ["", f"Wall time {time.perf_counter() - started:.0f} s; torch {torch.__version__}, 1 thread."]
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
