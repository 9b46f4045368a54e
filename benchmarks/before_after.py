"""Before -> after tables: what a code change did to a committed sweep.

Usage: python benchmarks/before_after.py DIR   (reads DIR/runs_before.csv and DIR/runs.csv, both from
`earlykd report`; writes DIR/before_after.md). Per method and earliness: average test AUC-PRC over the
datasets both files hold, before, after and the change; per dataset: the teacher's score before and after.
"""
import sys
from pathlib import Path

import pandas as pd

from earlykd.report.tables import per_dataset_means, split, teacher_scores


def averages(students: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """(method, earliness) -> average over `datasets` of the per-dataset mean over seeds."""
    rows = {}
    for e in sorted(students.earliness.unique()):
        means = per_dataset_means(students, e)
        means = means.loc[means.index.intersection(datasets)]
        for method, value in means.mean().items():
            rows[(method, e)] = value
    return pd.Series(rows)


def main() -> None:
    root = Path(sys.argv[1])
    (s0, t0), (s1, t1) = (split(pd.read_csv(root / f)) for f in ("runs_before.csv", "runs.csv"))
    datasets = sorted(set(s0.dataset) & set(s1.dataset))
    before, after = averages(s0, datasets), averages(s1, datasets)
    lines = [f"Average test AUC-PRC over {len(datasets)} datasets ({', '.join(datasets)}); mean over seeds "
             "per dataset first. 'before': the committed run before the prefix contract and the baseline "
             "fixes; 'after': this code.", "",
             "| method | earliness | before | after | change |", "|---|---|---|---|---|"]
    for key in sorted(set(before.index) | set(after.index)):
        b, a = before.get(key), after.get(key)
        fmt = lambda v: "-" if v is None or pd.isna(v) else f"{v:.3f}"  # noqa: E731
        change = "-" if b is None or a is None else f"{a - b:+.3f}"
        lines.append(f"| {key[0]} | {key[1]:g} | {fmt(b)} | {fmt(a)} | {change} |")
    tb, ta = teacher_scores(t0), teacher_scores(t1)
    lines += ["", "Teachers (full series, test AUC-PRC, mean over the teachers trained):", "",
              "| dataset | before | after | change |", "|---|---|---|---|"]
    for d in datasets:
        lines.append(f"| {d} | {tb.get(d, float('nan')):.3f} | {ta.get(d, float('nan')):.3f} | "
                     f"{ta.get(d, float('nan')) - tb.get(d, float('nan')):+.3f} |")
    (root / "before_after.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
