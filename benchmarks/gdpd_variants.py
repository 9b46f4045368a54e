"""GDPD's stage-2 variants, chosen per run by validation loss, against Base and Base-KD.

Usage: python benchmarks/gdpd_variants.py QUICK_DIR VARIANT_DIR...   (each with runs.csv from
`earlykd report`; the variant sweeps come from benchmarks/suites/quick-gdpd-*.yaml). Writes
benchmarks/results/quick-gdpd-variants/summary_table.md.

For every (method, dataset, earliness, seed) of gdpd and gdpd_kd, the candidates are the default run
(QUICK_DIR) and one run per variant directory, all from the same teacher and seed. The run of lowest
validation loss is kept; the test split is only read for the kept run's row. Tables: average test
AUC-PRC over datasets (each the mean over seeds) and average rank against Base, Base-KD and FitNets,
and how often each variant was chosen.
"""
import sys
from pathlib import Path

import pandas as pd

from earlykd.report.tables import per_dataset_means, split

GDPD = ("gdpd", "gdpd_kd")
OTHERS = ("base", "kd", "fitnets")
KEY = ["method", "dataset", "earliness", "seed"]


def candidates(quick: Path, variants: list[Path]) -> pd.DataFrame:
    students, _ = split(pd.read_csv(quick / "runs.csv"))
    rows = [students[students.method.isin(GDPD)].assign(variant="default")]
    for path in variants:
        df = pd.read_csv(path / "runs.csv")
        rows.append(df[df.method.isin(GDPD)].assign(variant=path.name))
    both = pd.concat(rows, ignore_index=True)
    return both[both.earliness.isin(both[both.variant != "default"].earliness.unique())]


def chosen(cands: pd.DataFrame) -> pd.DataFrame:
    """Per KEY the candidate of lowest validation loss (ties: the default, then by name)."""
    order = cands.assign(is_default=cands.variant != "default").sort_values(KEY + ["val_loss", "is_default", "variant"])
    complete = order.groupby(KEY).variant.transform("nunique") == cands.variant.nunique()
    return order[complete].groupby(KEY, as_index=False).first()


def table(students: pd.DataFrame, e: float, names: list[str]) -> list[str]:
    means = per_dataset_means(students, e)[names]
    ranked = means.rank(axis=1, ascending=False)
    ranks = ranked.mean()
    wins = ranked.eq(ranked.min(axis=1), axis=0).sum()   # a tie for first is a win for each
    return [f"| {e:g} | {n} | {means[n].mean():.3f} | {ranks[n]:.2f} | {wins[n]} |" for n in names]


def main() -> None:
    quick, variants = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    cands = candidates(quick, variants)
    picked = chosen(cands)
    students, _ = split(pd.read_csv(quick / "runs.csv"))
    earliness = sorted(picked.earliness.unique())
    pool = [students[students.method.isin(OTHERS) & students.earliness.isin(earliness)]]
    pool += [part.assign(method=part.method + ":" + v) for v, part in cands.groupby("variant")]
    pool += [picked.assign(method=picked.method + ":val-chosen")]
    every = pd.concat(pool, ignore_index=True)
    lines = [("Test AUC-PRC: average over datasets (each the mean over 3 seeds), average rank and datasets won "
             "among the methods of each block. `:val-chosen` keeps per run the variant of lowest validation loss."),
             ""]
    for label, names in (("every variant", sorted(every.method.unique(), key=lambda m: (":" in m, m))),
                         ("the issue's comparison", list(OTHERS) + [f"{m}:val-chosen" for m in GDPD])):
        lines += [f"### {label}", "", "| e | method | AUC-PRC | rank | wins |", "|---|---|---|---|---|"]
        for e in earliness:
            lines += table(every, e, names)
        lines.append("")
    counts = picked.groupby(["method", "earliness", "variant"]).size().unstack(fill_value=0)
    lines += ["### Variant kept by validation loss (runs)", "", "| method | e | " + " | ".join(counts.columns) + " |",
              "|---" * (len(counts.columns) + 2) + "|"]
    lines += [f"| {m} | {e:g} | " + " | ".join(str(v) for v in row) + " |" for (m, e), row in counts.iterrows()]
    lines.append("")
    per_dataset = picked.groupby(["method", "dataset"]).variant.agg(lambda v: v.value_counts().idxmax())
    lines += ["Most often kept per dataset: " + "; ".join(f"{m} {d}: {v}" for (m, d), v in per_dataset.items()), ""]
    out = quick.parent / "quick-gdpd-variants" / "summary_table.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
