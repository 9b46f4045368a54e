"""The uncertainty benchmark's report: pooling folders of different seeds, the paired table, and how often the
first target is met by chance."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import uncertainty_report as report  # noqa: E402

DATASETS = ["A", "B", "C", "D", "E", "F"]


def runs(seeds) -> pd.DataFrame:
    rows = [{"dataset": d, "method": "ensemble", "earliness": 1.0, "seed": 0, "accuracy": 0.9, "nll": 0.3,
             "ece": 0.05, "auroc_mi": 0.8, "auroc_entropy": 0.8, "brier": 0.2, "ms_per_prediction": 5.0}
            for d in DATASETS]
    for i, d in enumerate(DATASETS):
        for s in seeds:
            for m, nll, mi in (("dlf", 0.4, 0.70 + 0.01 * i), ("kd", 0.5, None), ("hydra", 0.5, 0.75)):
                rows.append({"dataset": d, "method": m, "earliness": 0.4, "seed": s, "accuracy": 0.8, "nll": nll,
                             "ece": 0.05, "auroc_mi": mi, "auroc_entropy": 0.8, "brier": 0.3,
                             "ms_per_prediction": 0.5})
    return pd.DataFrame(rows)


def test_pooled_keeps_the_ensemble_once_and_refuses_a_seed_in_two_folders():
    both = report.pooled([runs([0, 1, 2]), runs([3, 4, 5])], ["first", "second"])
    assert (both.method == "ensemble").sum() == len(DATASETS)
    assert sorted(both[both.method == "dlf"].seed.unique()) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(SystemExit, match="dlf on A at e = 0.4, seed 2 is in more than one of first, second"):
        report.pooled([runs([0, 1, 2]), runs([2, 3])], ["first", "second"])


def test_paired_counts_pairs_where_dlf_is_better_and_its_mean_difference():
    table = report.paired(runs([0, 1, 2]))
    line = next(row for row in table.splitlines() if row.startswith("| 0.4 |"))
    cells = [c.strip() for c in line.strip("|").split("|")][1:]
    assert cells[0].startswith("-0.100 (18/18, p = ")           # nll: lower is better, every pair
    assert cells[2].startswith("+0.000 (0/18, p = nan")         # accuracy tied everywhere: no test
    assert cells[3].startswith("-0.025 (0/18, p = ")            # MI: dlf .70-.75 against hydra's .75


def test_per_dataset_counts_the_seeds_where_dlf_is_lower_and_higher():
    frame = runs([0, 1, 2])
    frame.loc[(frame.method == "dlf") & (frame.dataset == "B") & (frame.seed == 2), "nll"] = 0.8
    table = report.per_dataset(frame)
    assert "| A | -0.100 (3 / 0) | +0.000 (0 / 0) | +0.000 (0 / 0) |" in table
    assert "| B | +0.033 (2 / 1) |" in table                       # (-0.1 - 0.1 + 0.3) / 3


def test_main_writes_the_pooled_tables_where_asked(tmp_path):
    for name, seeds in (("one", [0, 1, 2]), ("two", [3, 4, 5])):
        (tmp_path / name).mkdir()
        runs(seeds).to_csv(tmp_path / name / "runs.csv", index=False)
    report.main([str(tmp_path / "one"), str(tmp_path / "two"), "--out", str(tmp_path / "pooled.md")])
    text = (tmp_path / "pooled.md").read_text()
    assert "seeds per method: ensemble 1, dlf 6, kd 6, hydra 6." in text
    assert "(36/36, p = " in text
    assert "× ensemble cost" not in text and "each folder's own table.md" in text   # two sweeps' timings
    assert not (tmp_path / "one" / "table.md").exists()   # written to --out only
    report.main([str(tmp_path / "one")])
    assert "× ensemble cost" in (tmp_path / "one" / "table.md").read_text()
    with pytest.raises(SystemExit, match="missing/runs.csv not found"):
        report.main([str(tmp_path / "missing")])


def test_halves_counts_the_first_target_met_by_chance_over_seed_subsets():
    frame = runs([0, 1, 2, 3, 4, 5])
    kd = frame.method == "kd"
    frame.loc[kd, "nll"] = 0.5 + 0.01 * frame.loc[kd, "seed"]    # a half meets it iff its seeds sum to 7 or less
    text = report.halves(frame, None)
    assert "kd against itself (each of 20 splits into two halves): meets it on 3.00 of 6 datasets on average " \
           "(range 0-6)" in text
    assert "dlf against kd (each of 400 pairs of subsets): 6.00 of 6 on average; 5 or more (the issue's bar) in " \
           "100% of pairs" in text
    variants = frame[frame.method == "dlf"].assign(variant="worse", nll=0.9)
    assert "variant worse alone, all 6 seeds (chosen after the fact: a ceiling): 0 of 6." in \
        report.halves(frame, variants)
    assert report.halves(runs([0, 1, 2]), None) == ""                 # an odd number of seeds: no halves
