"""Tables of the uncertainty benchmark from its runs.csv (benchmarks/uncertainty.py).

    .venv/bin/python benchmarks/uncertainty_report.py [DIR]   # default benchmarks/results/uncertainty

Writes DIR/table.md: per earliness, each method's mean over datasets of its per-dataset mean over seeds, with
cost per prediction against the ensemble's; per dataset at e = 0.4, accuracy / NLL / ECE; the issue's
checks (DLF's NLL and ECE at or below kd's with accuracy within 1 point; DLF's AUROC against Hydra's); and,
from DIR/variants.csv, each DLF variant beside the validation-chosen one.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["accuracy", "nll", "ece", "brier", "auroc_entropy", "auroc_mi", "ms_per_prediction"]
ORDER = ["ensemble", "dlf", "kd", "hydra", "endd"]


def _fmt(v) -> str:
    return "-" if pd.isna(v) else f"{v:.3f}"


def tables(runs: pd.DataFrame) -> str:
    per_dataset = runs.groupby(["earliness", "method", "dataset"])[METRICS].mean().reset_index()
    ensemble_ms = runs[runs.method == "ensemble"].groupby("dataset")["ms_per_prediction"].mean()
    per_dataset["cost_vs_ensemble"] = per_dataset["ms_per_prediction"] / per_dataset["dataset"].map(ensemble_ms)
    seeds = runs.groupby("method")["seed"].nunique()
    out = [f"Datasets: {', '.join(sorted(runs.dataset.unique()))}; seeds per method: "
           + ", ".join(f"{m} {seeds[m]}" for m in ORDER if m in seeds) + ".", ""]
    for e, block in per_dataset.groupby("earliness"):
        out += [f"### e = {e:g} (mean over datasets of the mean over seeds)", "",
                "| method | " + " | ".join(METRICS + ["× ensemble cost"]) + " |", "|---" * (len(METRICS) + 2) + "|"]
        means = block.groupby("method")[METRICS + ["cost_vs_ensemble"]].mean()
        for m in [m for m in ORDER if m in means.index]:
            out.append(f"| {m} | " + " | ".join(_fmt(means.loc[m, k]) for k in METRICS + ["cost_vs_ensemble"]) + " |")
        out.append("")
    at = per_dataset[per_dataset.earliness == 0.4]
    if len(at):
        out += ["### e = 0.4 per dataset: accuracy / NLL / ECE", "", "| dataset | " + " | ".join(
                m for m in ORDER[1:]) + " |", "|---" * 5 + "|"]
        for d, block in at.groupby("dataset"):
            cell = block.set_index("method")
            out.append(f"| {d} | " + " | ".join(
                " / ".join(_fmt(cell.loc[m, k]) for k in ("accuracy", "nll", "ece")) if m in cell.index else "-"
                for m in ORDER[1:]) + " |")
        out += ["", *checks(at)]
    return "\n".join(out) + "\n"


def checks(at: pd.DataFrame) -> list[str]:
    wide = at.pivot(index="dataset", columns="method")
    if not {"dlf", "kd"} <= set(at.method):
        return []
    ok = ((wide["nll"]["dlf"] <= wide["nll"]["kd"]) & (wide["ece"]["dlf"] <= wide["ece"]["kd"])
          & (wide["accuracy"]["dlf"] >= wide["accuracy"]["kd"] - 0.01))
    lines = [f"- DLF's NLL and ECE at or below kd's, accuracy within 1 point: {int(ok.sum())} of {len(ok)} datasets "
             "(the issue asks 5 of 6)."]
    if "hydra" in set(at.method):
        for k in ("auroc_entropy", "auroc_mi"):
            lines.append(f"- mean {k}: dlf {_fmt(wide[k]['dlf'].mean())}, hydra {_fmt(wide[k]['hydra'].mean())}.")
    return lines


def variant_table(variants: pd.DataFrame, chosen: pd.DataFrame) -> str:
    """Each DLF variant and the validation-chosen `dlf`, mean over datasets of the mean over seeds."""
    keys = ["accuracy", "nll", "ece", "auroc_entropy", "auroc_mi", "val_nll"]
    rows = pd.concat([variants, chosen.assign(variant="chosen")])
    out = ["### DLF variants (chosen per dataset, earliness and seed by validation NLL)", "",
           "| e | variant | " + " | ".join(keys) + " | cells chosen |", "|---" * (len(keys) + 3) + "|"]
    picks = chosen.groupby(["earliness", "variant"]).size()
    for (e, name), block in rows.groupby(["earliness", "variant"], sort=True):
        means = block.groupby("dataset")[keys].mean().mean()
        count = "" if name == "chosen" else str(picks.get((e, name), 0))
        out.append(f"| {e:g} | {name} | " + " | ".join(_fmt(means[k]) for k in keys) + f" | {count} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> None:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else ROOT / "benchmarks" / "results" / "uncertainty"
    runs = pd.read_csv(root / "runs.csv")
    text = tables(runs)
    if (root / "variants.csv").is_file():
        text += "\n" + variant_table(pd.read_csv(root / "variants.csv"), runs[runs.method == "dlf"])
    (root / "table.md").write_text(text)
    print(f"written {root / 'table.md'}")


if __name__ == "__main__":
    main()
