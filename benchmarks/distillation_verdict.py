"""How large a gain of GDPD over Base-KD the committed sweeps leave room for: per regime and earliness, the paired
difference GDPD − Base-KD in test AUC-PRC (points), averaged as the suites' tables average (over datasets of the
means over seeds), with a 95 % interval from a two-level bootstrap (datasets drawn with replacement, then seeds
within each), the Wilcoxon p over the (dataset, seed) pairs, and whether the interval excludes the +2 points
the target asks for. Nothing is chosen here: the rows are the committed test scores of each sweep.

A second table puts each regime's students beside the same students from a know-nothing teacher.

Usage: python benchmarks/distillation_verdict.py [OUT]   (default benchmarks/results/distillation_verdict/intervals.md)
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from earlykd.report.tables import per_dataset_means, split
from control_table import ALL_LEVELS, paired_diffs
from paired_gains import one_prefix_mode, wilcoxon_p

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 2.0            # points of average AUC-PRC the target asks GDPD to gain over Base-KD
DRAWS = 10_000
# regime: (sweep, sweep holding GDPD's rows with today's folded chain, or None when the sweep itself ran it)
REGIMES = {
    "quick": ("quick", "quick-gdpd-folded"),
    "paper-cpu": ("paper-cpu", "paper-cpu-gdpd-folded"),
    "paper-gpu": ("paper-gpu", None),
}
# the same students from a teacher that knows nothing, as (sweep, folded re-run) likewise
CONTROLS = {
    "quick": ("quick-control", "quick-control-gdpd-folded"),
    "paper-cpu": ("paper-cpu-control", "paper-cpu-control-gdpd-folded"),
    "paper-gpu": ("paper-gpu-control", None),
}
KEY = ["dataset", "earliness", "seed", "method"]
METHODS = ("gdpd", "gdpd_kd")


def runs(sweep: str, folded: str | None) -> pd.DataFrame:
    """The sweep's student rows, each replaced by its re-run with today's code where there is one."""
    students, _ = split(one_prefix_mode(RESULTS / sweep / "runs.csv"))
    if folded is None:
        return students
    again, _ = split(one_prefix_mode(RESULTS / folded / "runs.csv"))
    replaced = students.set_index(KEY).index.isin(again.set_index(KEY).index)
    return pd.concat([students[~replaced], again])


def bootstrap(diff: pd.Series, rng: np.random.Generator) -> tuple[float, float]:
    """95 % percentile interval of the mean over datasets of the mean over seeds, datasets then seeds resampled."""
    groups = [g.to_numpy() for _, g in diff.groupby(level="dataset")]
    means = np.empty(DRAWS)
    for i in range(DRAWS):
        picked = rng.integers(len(groups), size=len(groups))
        means[i] = np.mean([rng.choice(groups[j], size=len(groups[j])).mean() for j in picked])
    return tuple(np.percentile(means, [2.5, 97.5]))


def rows() -> list[str]:
    """Method − Base-KD per regime, method and earliness (the table's rows)."""
    rng = np.random.default_rng(0)
    out = []
    for regime, (sweep, folded) in REGIMES.items():
        students = runs(sweep, folded)
        wide = students.pivot_table(index=["earliness", "dataset", "seed"], columns="method", values="auc_prc")
        ranks = {e: per_dataset_means(students, e).rank(axis=1, ascending=False).mean() for e in (0.2, 0.4)}
        for method in (m for m in METHODS if m in wide.columns):
            for e in (0.2, 0.4):
                part = wide.loc[e, ["kd", method]].dropna()
                diff = 100 * (part[method] - part["kd"])
                mean = diff.groupby(level="dataset").mean().mean()
                low, high = bootstrap(diff, rng)
                verdict = "yes" if high < TARGET else "no"
                out.append(f"| {regime} | {method} | {e:g} | {diff.index.get_level_values('dataset').nunique()} | "
                           f"{len(diff)} | {mean:+.1f} | [{low:+.1f}, {high:+.1f}] | {(diff > 0).sum()}/{len(diff)} | "
                           f"{wilcoxon_p(diff):.2f} | {ranks[e][method]:.2f} of {len(ranks[e])} | {verdict} |")
    return out


def control_rows() -> list[str]:
    """Real − know-nothing teacher per regime, method and earliness (control_table's pairing), today's code on
    both sides; 'both' averages each (dataset, seed)'s levels first, so its pairs are independent."""
    out = []
    for regime, (sweep, folded) in REGIMES.items():
        for method, label, diff in paired_diffs(runs(sweep, folded), runs(*CONTROLS[regime])):
            diff = 100 * diff
            out.append(f"| {regime} | {method} | {'both' if label == ALL_LEVELS else label} | "
                       f"{diff.index.get_level_values('dataset').nunique()} | {len(diff)} | {diff.mean():+.1f} | "
                       f"{(diff > 0).sum()}/{len(diff)} | {wilcoxon_p(diff):.2g} |")
    return out


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "distillation_verdict" / "intervals.md"
    lines = ["Method − Base-KD, test AUC-PRC in points: the mean over datasets of the mean over seeds; 95 % interval "
             f"from {DRAWS} two-level bootstrap draws (datasets, then seeds; generator seed 0); Wilcoxon over the "
             "(dataset, seed) pairs; the method's average rank among the sweep's students (1 = best; ties share); "
             f"last column: does the interval exclude a gain of +{TARGET:g} points? GDPD's rows are today's code "
             "(the folded chain's re-runs) where the sweep predates it.", "",
             "| regime | method | e | datasets | pairs | mean | 95 % interval | method ahead | Wilcoxon p | "
             f"average rank | +{TARGET:g} excluded |", "|---|---|---|---|---|---|---|---|---|---|---|", *rows(), "",
             "Real teacher − know-nothing teacher (an untrained one, chosen the same way), the same students, test "
             "AUC-PRC in points, paired by (dataset, seed) where both ran, today's code on both sides; 'both': the mean "
             "over the levels per (dataset, seed). A gain that a know-nothing teacher gives too is regularisation.", "",
             "| regime | method | e | datasets | pairs | real − know-nothing | real ahead | Wilcoxon p |",
             "|---|---|---|---|---|---|---|---|", *control_rows()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
