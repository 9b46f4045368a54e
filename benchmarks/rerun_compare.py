"""The same students trained by two versions of the code: paired by (dataset, method, earliness, seed).

A change that alters floats at rounding level (as GDPD's folded chain does) is amplified by training
like a change of seed; this shows whether the numbers moved beyond that. Per method and earliness: the
mean test AUC-PRC of each version, the mean paired difference with its paired t-test, and the seed
standard deviation of the first version (the spread a change of seed gives) for scale. Also the
difference to a reference method of the first version (e.g. Base-KD), before and after.

    python benchmarks/rerun_compare.py OLD/runs.csv NEW/runs.csv [--reference kd] [--out FILE.md]
"""
import argparse
from pathlib import Path

import pandas as pd
from scipy import stats

KEY = ["dataset", "method", "earliness", "seed"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--reference", default="kd", help="a method of OLD to set both versions against")
    ap.add_argument("--metric", default="auc_prc")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    old, new = (pd.read_csv(p) for p in (a.old, a.new))
    new = new[new.method != "teacher"]
    pairs = old.merge(new, on=KEY, suffixes=("_old", "_new"))
    m = a.metric
    ref = old[old.method == a.reference].set_index(["dataset", "earliness", "seed"])[m]
    lines = [f"# Re-run against the committed runs: test {m}, paired by dataset, earliness and seed", "",
             f"old: `{a.old}`; new: `{a.new}`; {len(pairs)} pairs. Seed sd: the mean over datasets of the old "
             f"runs' standard deviation across seeds. vs {a.reference}: the mean difference to the old {a.reference} "
             "student of the same dataset, earliness and seed.", "",
             f"| method | e | old | new | new - old | p (paired t) | seed sd (old) | old - {a.reference} | "
             f"new - {a.reference} |", "|---|---|---|---|---|---|---|---|---|"]
    for (method, e), g in pairs.groupby(["method", "earliness"]):
        diff = g[f"{m}_new"] - g[f"{m}_old"]
        p = stats.ttest_rel(g[f"{m}_new"], g[f"{m}_old"]).pvalue if diff.abs().sum() > 0 else 1.0
        sd = g.groupby("dataset")[f"{m}_old"].std().mean()
        base = ref.loc[list(zip(g.dataset, g.earliness, g.seed))].to_numpy()
        lines.append(f"| {method} | {e} | {g[f'{m}_old'].mean():.4f} | {g[f'{m}_new'].mean():.4f} | "
                     f"{diff.mean():+.4f} | {p:.2f} | {sd:.4f} | {(g[f'{m}_old'] - base).mean():+.4f} | "
                     f"{(g[f'{m}_new'] - base).mean():+.4f} |")
    diff = pairs[f"{m}_new"] - pairs[f"{m}_old"]
    lines += ["", f"All {len(pairs)} pairs: mean new - old {diff.mean():+.4f} (sd {diff.std():.4f}), paired t-test "
              f"p = {stats.ttest_rel(pairs[f'{m}_new'], pairs[f'{m}_old']).pvalue:.2f}; identical pairs: "
              f"{int((diff == 0).sum())}."]
    text = "\n".join(lines) + "\n"
    if a.out:
        Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
