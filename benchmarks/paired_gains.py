"""Paired differences between methods of one sweep: method − reference per (dataset, seed), summarised per
earliness with a two-sided Wilcoxon signed-rank test. Runs of one seed share the teacher and the student's
initialisation, so the pairing removes dataset and seed effects. The last column adjusts the p-values by Holm's
method over the table's distinct comparisons (base vs kd at one earliness counts once, whichever is the
reference): a difference is shown beyond doubt when that column, not the raw p, is small.

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


def wilcoxon_p(diff: pd.Series) -> float:
    return wilcoxon(diff).pvalue if (diff != 0).any() else float("nan")


def paired_cells(diff: pd.Series) -> str:
    """'pairs | mean difference | ahead | Wilcoxon p' of paired differences, as markdown cells."""
    return f"{len(diff)} | {diff.mean():+.4f} | {(diff > 0).sum()}/{len(diff)} | {wilcoxon_p(diff):.3g}"


def holm(pvalues: dict) -> dict:
    """Holm's step-down adjustment (family-wise error) of {comparison: p}; NaN p-values stay NaN and do not count."""
    ranked = sorted((p, key) for key, p in pvalues.items() if p == p)
    adjusted, running = {key: float("nan") for key in pvalues}, 0.0
    for rank, (p, key) in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - rank) * p))
        adjusted[key] = running
    return adjusted


def main() -> None:
    root, references = Path(sys.argv[1]), sys.argv[2:] or ["base", "kd"]
    students, _ = split(one_prefix_mode(root / "runs.csv"))
    wide = students.pivot_table(index=["earliness", "dataset", "seed"], columns="method", values="auc_prc")
    rows = [(ref, method, e, part[method] - part[ref]) for ref in references for method in wide.columns if method != ref
            for e, part in wide[[ref, method]].dropna().groupby(level="earliness")]
    adjusted = holm({(frozenset((ref, method)), e): wilcoxon_p(diff) for ref, method, e, diff in rows})
    lines = [f"Test AUC-PRC of `{root.name}`: method − reference per (dataset, seed), over the cells where both ran; "
             f"Holm's adjustment over the {len(adjusted)} distinct comparisons.", "",
             "| reference | method | e | pairs | mean difference | method ahead | Wilcoxon p | Holm p |",
             "|---|---|---|---|---|---|---|---|"]
    for ref, method, e, diff in rows:
        lines.append(f"| {ref} | {method} | {e:g} | {paired_cells(diff)} | "
                     f"{adjusted[(frozenset((ref, method)), e)]:.3g} |")
    (root / "paired_gains.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
