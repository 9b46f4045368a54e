"""Paired differences between methods of one sweep: method − reference per (dataset, seed), summarised per
earliness with a two-sided Wilcoxon signed-rank test. Runs of one seed share the teacher and the student's
initialisation, so the pairing removes dataset and seed effects.

Usage: python benchmarks/paired_gains.py DIR [REFERENCE ...]   (reads DIR/runs.csv; references default to
base and kd; writes DIR/paired_gains.md)
"""
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import wilcoxon

from earlykd.report.tables import split


def one_prefix_mode(path: Path) -> pd.DataFrame:
    """runs.csv of one prefix mode: runs of another mode are other cells, which a pairing would silently mix."""
    runs = pd.read_csv(path)
    modes = sorted(runs.loc[runs.method != "teacher", "prefix_mode"].dropna().unique())
    if len(modes) > 1:
        sys.exit(f"error: {path} holds runs of prefix modes {', '.join(modes)}; pair one mode at a time")
    return runs


def paired_cells(diff: pd.Series) -> str:
    """'pairs | mean difference | ahead | Wilcoxon p' of paired differences, as markdown cells."""
    p = wilcoxon(diff).pvalue if (diff != 0).any() else float("nan")
    return f"{len(diff)} | {diff.mean():+.4f} | {(diff > 0).sum()}/{len(diff)} | {p:.3g}"


def main() -> None:
    root, references = Path(sys.argv[1]), sys.argv[2:] or ["base", "kd"]
    students, _ = split(one_prefix_mode(root / "runs.csv"))
    wide = students.pivot_table(index=["earliness", "dataset", "seed"], columns="method", values="auc_prc")
    lines = [f"Test AUC-PRC of `{root.name}`: method − reference per (dataset, seed), over the cells where both ran.",
             "", "| reference | method | e | pairs | mean difference | method ahead | Wilcoxon p |",
             "|---|---|---|---|---|---|---|"]
    for ref in references:
        for method in (m for m in wide.columns if m != ref):
            for e, part in wide[[ref, method]].dropna().groupby(level="earliness"):
                lines.append(f"| {ref} | {method} | {e:g} | {paired_cells(part[method] - part[ref])} |")
    (root / "paired_gains.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
