"""benchmarks/distillation_verdict.py: re-runs replace only their own rows; the bootstrap interval and the
like-for-like control pairing."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import distillation_verdict as verdict  # noqa: E402


def write_runs(path: Path, rows: list[tuple]) -> None:
    path.mkdir(parents=True)
    frame = pd.DataFrame(rows, columns=["dataset", "method", "earliness", "seed", "auc_prc"])
    frame.assign(prefix_mode="truncate").to_csv(path / "runs.csv", index=False)


def test_a_rerun_replaces_its_own_rows_and_keeps_the_others(tmp_path, monkeypatch):
    monkeypatch.setattr(verdict, "RESULTS", tmp_path)
    write_runs(tmp_path / "sweep", [("A", "gdpd", 0.2, 0, 0.5), ("B", "gdpd", 0.2, 0, 0.6), ("A", "kd", 0.2, 0, 0.7),
                                    ("A", "teacher", 1.0, 0, 0.9)])
    write_runs(tmp_path / "again", [("A", "gdpd", 0.2, 0, 0.55)])
    got = verdict.runs("sweep", "again").set_index(["dataset", "method"]).auc_prc.to_dict()
    # B's gdpd row has no re-run and stays; the teacher is not a student
    assert got == {("A", "gdpd"): 0.55, ("B", "gdpd"): 0.6, ("A", "kd"): 0.7}


def test_the_bootstrap_interval_holds_the_mean_and_collapses_when_every_pair_agrees():
    index = pd.MultiIndex.from_product([["A", "B", "C"], range(3)], names=["dataset", "seed"])
    rng = np.random.default_rng(0)
    assert verdict.bootstrap(pd.Series(1.5, index=index), rng) == (1.5, 1.5)
    spread = pd.Series(np.arange(9.0), index=index)
    low, high = verdict.bootstrap(spread, rng)
    assert low < spread.mean() < high and 0 <= low and high <= 8


def test_the_control_pairs_today_s_rows_on_both_sides(tmp_path, monkeypatch):
    monkeypatch.setattr(verdict, "RESULTS", tmp_path)
    monkeypatch.setattr(verdict, "REGIMES", {"r": ("real", "real-again")})
    monkeypatch.setattr(verdict, "CONTROLS", {"r": ("control", "control-again")})
    real = [("A", "gdpd", 0.2, s, 0.5) for s in range(3)] + [("A", "gdpd", 0.4, s, 0.6) for s in range(3)]
    write_runs(tmp_path / "real", real)
    write_runs(tmp_path / "real-again", [("A", "gdpd", 0.2, s, 0.7) for s in range(3)])
    write_runs(tmp_path / "control", [(d, m, e, s, 0.4) for d, m, e, s, _ in real])
    write_runs(tmp_path / "control-again", [("A", "gdpd", 0.2, s, 0.6) for s in range(3)])
    rows = {cells[3].strip(): cells[6].strip() for cells in (r.split("|") for r in verdict.control_rows())}
    # e 0.2: the re-runs on both sides (0.7 - 0.6); e 0.4: the sweeps (0.6 - 0.4); both: their mean per seed
    assert rows == {"0.2": "+10.0", "0.4": "+20.0", "both": "+15.0"}
