"""The paper's Table 2 analogue: every method at one earliness, ranked over datasets.

Usage: python benchmarks/zoo_summary.py [DIR]   (default benchmarks/results/zoo; needs DIR/runs.csv
from `earlykd report DIR`). Writes DIR/table2.md: average AUC-PRC, average rank (1 = best, ties
averaged), top-3 count, seconds per epoch and peak memory per method.
"""
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import rankdata

from earlykd.errors import check
from earlykd.report.tables import per_dataset_means, split, teacher_scores

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks" / "results" / "zoo"
    students, teachers = split(pd.read_csv(root / "runs.csv"))
    e = sorted(students.earliness.unique())
    check(len(e) == 1, f"{root}: runs at several earliness values {e}; this table ranks one")
    means = per_dataset_means(students, e[0])
    ranks = means.apply(lambda row: pd.Series(rankdata(-row.values), index=row.index), axis=1)
    table = pd.DataFrame({
        "avg AUC-PRC": means.mean(),
        "avg rank": ranks.mean(),
        "top-3": (ranks <= 3).sum(),
        "s/epoch (median)": students.groupby("method").seconds_per_epoch.median(),
        "peak RSS MiB (median)": students.groupby("method").peak_memory_mb.median(),
    }).sort_values("avg rank")
    teacher = teacher_scores(teachers).reindex(means.index)
    lines = [f"# All methods at earliness {', '.join(f'{v:g}' for v in e)} ({len(means)} datasets, "
             f"{students.seed.nunique()} seeds)", "",
             "| method | avg AUC-PRC | avg rank | top-3 | s/epoch (median) | peak RSS MiB (median) |",
             "|---|---|---|---|---|---|"]
    for method, r in table.iterrows():
        lines.append(f"| {method} | {r['avg AUC-PRC']:.4f} | {r['avg rank']:.2f} | {int(r['top-3'])} | "
                     f"{r['s/epoch (median)']:.4f} | {r['peak RSS MiB (median)']:.0f} |")
    lines += ["", f"Teacher (full series), average AUC-PRC over the same datasets: {teacher.mean():.4f}", "",
              "Per dataset (mean over seeds):", "", "| dataset | " + " | ".join(means.columns) + " |",
              "|---" * (len(means.columns) + 1) + "|"]
    lines += [f"| {d} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for d, row in means.iterrows()]
    (root / "table2.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
