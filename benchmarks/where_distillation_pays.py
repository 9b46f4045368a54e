"""Where distillation pays: per dataset and earliness, the room a teacher leaves (Teacher - Base) against
what each method gains over Base (Method - Base), both in test AUC-PRC (means over seeds).

Usage: python benchmarks/where_distillation_pays.py DIR   (reads DIR/runs.csv from `earlykd report`;
writes DIR/where_distillation_pays.png and DIR/where_distillation_pays.md). The table gives, per method,
the mean gain over Base, the share of cells where it beats Base, and the gap closed,
(Method - Base) / (Teacher - Base), over the cells where the teacher is at least 0.05 above Base.
"""
import sys
from pathlib import Path

import matplotlib
import pandas as pd

from earlykd.report.tables import per_dataset_means, split, teacher_scores

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOM = 0.05  # the teacher must be this far above Base for "gap closed" to mean something


def cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, earliness, method): room = Teacher - Base, gain = Method - Base."""
    students, teachers = split(df)
    teacher = teacher_scores(teachers)
    rows = []
    for e in sorted(students.earliness.unique()):
        means = per_dataset_means(students, e)
        for dataset, row in means.iterrows():
            for method, value in row.items():
                if method != "base":
                    rows.append({"dataset": dataset, "earliness": e, "method": method,
                                 "room": teacher[dataset] - row["base"], "gain": value - row["base"]})
    return pd.DataFrame(rows)


def main() -> None:
    root = Path(sys.argv[1])
    data = cells(pd.read_csv(root / "runs.csv"))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for method, part in data.groupby("method"):
        ax.scatter(part.room, part.gain, label=method, s=22, alpha=0.8)
    ax.axhline(0, color="grey", lw=0.8)
    lim = max(data.room.max(), 0.05)
    ax.plot([0, lim], [0, lim], color="grey", lw=0.8, ls="--", label="gap fully closed")
    ax.set_xlabel("Teacher − Base (test AUC-PRC)")
    ax.set_ylabel("Method − Base (test AUC-PRC)")
    ax.set_title(f"Where distillation pays: {root.name} (one point per dataset × earliness)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(root / "where_distillation_pays.png", dpi=120)
    lines = [f"Per method over {data[['dataset', 'earliness']].drop_duplicates().shape[0]} (dataset, earliness) "
             f"cells of `{root.name}`; gap closed over the cells where Teacher − Base ≥ {ROOM}.", "",
             "| method | mean gain over Base | cells above Base | cells with room | gap closed (mean) |",
             "|---|---|---|---|---|"]
    for method, part in data.groupby("method"):
        roomy = part[part.room >= ROOM]
        closed = (roomy.gain / roomy.room).mean() if len(roomy) else float("nan")
        lines.append(f"| {method} | {part.gain.mean():+.4f} | {(part.gain > 0).sum()}/{len(part)} | {len(roomy)} | "
                     f"{closed:+.2f} |")
    (root / "where_distillation_pays.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
