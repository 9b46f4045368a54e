"""benchmarks/paired_gains.py: Holm's adjustment over the distinct comparisons of a paired table."""
from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import paired_gains  # noqa: E402


def test_holm_steps_down_and_stays_monotone():
    got = paired_gains.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": float("nan"), "e": 0.5})
    # ranked 0.01, 0.03, 0.04, 0.5 of 4 counted: 4 x 0.01, 3 x 0.03, max(0.09, 2 x 0.04), min(1, max(0.09, 0.5))
    assert got["a"] == 0.04 and math.isclose(got["c"], 0.09) and math.isclose(got["b"], 0.09) and got["e"] == 0.5
    assert math.isnan(got["d"])
    assert paired_gains.holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}


def test_a_comparison_counts_once_whichever_is_the_reference(tmp_path, monkeypatch):
    rows = ["dataset,method,earliness,prefix_mode,seed,auc_prc"]
    for dataset in ("A", "B"):
        for seed in range(6):
            for method, lift in (("base", 0.0), ("kd", 0.01 * (seed + 1)), ("fitnets", -0.02 * (seed % 2))):
                rows.append(f"{dataset},{method},0.2,truncate,{seed},{0.5 + lift + 0.001 * seed}")
        rows.append(f"{dataset},teacher,1.0,truncate,0,0.9")
    (tmp_path / "runs.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(sys, "argv", ["paired_gains.py", str(tmp_path)])
    paired_gains.main()
    text = (tmp_path / "paired_gains.md").read_text()
    assert "over the 3 distinct comparisons" in text   # base–kd, base–fitnets, kd–fitnets at e 0.2
    table = [line.split(" | ") for line in text.splitlines() if line.startswith("| base") or line.startswith("| kd")]
    holm_of = {(cells[0].strip("| "), cells[1]): cells[-1].strip(" |") for cells in table}
    assert holm_of[("base", "kd")] == holm_of[("kd", "base")]
