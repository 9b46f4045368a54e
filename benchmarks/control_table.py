"""Distillation against its control: the same students from the real teacher and from a teacher that knows
nothing. A gain over Base that survives the know-nothing teacher is regularisation, not distillation.

Usage: python benchmarks/control_table.py REAL_DIR CONTROL_DIR   (both with runs.csv from `earlykd report`;
writes REAL_DIR/control.md). First a summary per method and earliness over (dataset, seed) pairs (the
same seed gives real and control student the same initialisation): the mean of real − control, how often
real is ahead, and a two-sided Wilcoxon signed-rank p-value; then per dataset, earliness and method present
in both: test AUC-PRC mean ± sd over seeds with the real teacher, with the control teacher, and Base's.
"""
import sys
from pathlib import Path

import pandas as pd

from earlykd.report.tables import split, teacher_scores
from paired_gains import one_prefix_mode, paired_cells  # a sibling script: benchmarks/ is on sys.path when run as a script


def stats(students: pd.DataFrame) -> pd.DataFrame:
    return students.groupby(["dataset", "earliness", "method"]).auc_prc.agg(["mean", "std", "count"])


ALL_LEVELS = "all, mean per (dataset, seed)"


def paired_diffs(real: pd.DataFrame, control: pd.DataFrame) -> list[tuple[str, str, pd.Series]]:
    """(method, earliness label, real − control per (dataset, seed)) per method and earliness; then per method
    over all earliness (ALL_LEVELS), each (dataset, seed)'s differences averaged over its levels first, so that
    a test's pairs are independent."""
    key = ["method", "earliness", "dataset", "seed"]
    both = real.set_index(key).auc_prc.to_frame("real").join(control.set_index(key).auc_prc.rename("control"),
                                                              how="inner").reset_index()
    both["diff"] = both.real - both.control
    groups = [(m, f"{e:g}", g.set_index(["dataset", "seed"])["diff"])
              for (m, e), g in both.groupby(["method", "earliness"])]
    groups += [(m, ALL_LEVELS, g.groupby(["dataset", "seed"])["diff"].mean()) for m, g in both.groupby("method")]
    return sorted(groups, key=lambda item: item[:2])


def paired(real: pd.DataFrame, control: pd.DataFrame) -> list[str]:
    """The table of `paired_diffs`."""
    lines = ["| method | e | pairs | real − know-nothing (mean) | real ahead | Wilcoxon p |", "|---|---|---|---|---|---|"]
    return lines + [f"| {method} | {e} | {paired_cells(diff)} |" for method, e, diff in paired_diffs(real, control)]


def main() -> None:
    real_dir, control_dir = Path(sys.argv[1]), Path(sys.argv[2])
    (real, real_t), (control, control_t) = (split(one_prefix_mode(d / "runs.csv")) for d in (real_dir, control_dir))
    r, c = stats(real), stats(control)
    teachers, know_nothing = teacher_scores(real_t), teacher_scores(control_t)
    lines = [(f"Test AUC-PRC. Teachers: real {teachers.round(3).to_dict()}, "
             f"know-nothing {know_nothing.round(3).to_dict()}."), "", "Paired by (dataset, seed):", ""]
    lines += paired(real, control) + ["", "Mean ± sd over seeds:", "",
             "| dataset | e | method | Base | real teacher | know-nothing teacher | real − know-nothing |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda s: f"{s['mean']:.3f} ± {s['std']:.3f} ({int(s['count'])})"
    for (dataset, e, method), row in c.iterrows():
        if (dataset, e, method) not in r.index or (dataset, e, "base") not in r.index:
            continue
        real_row = r.loc[(dataset, e, method)]
        lines.append(f"| {dataset} | {e:g} | {method} | {fmt(r.loc[(dataset, e, 'base')])} | {fmt(real_row)} | "
                     f"{fmt(row)} | {real_row['mean'] - row['mean']:+.3f} |")
    (real_dir / "control.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
