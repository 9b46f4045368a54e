"""Score a finished run on new labelled series (`earlykd evaluate RUN --test-path FILE`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import check
from .metrics import classification_metrics


def evaluate_file(run_dir: str | Path, test_path: str | Path, label_column="run", device: str = "auto",
                  warnings: list | None = None) -> dict:
    """Whole labelled series from a .npz/.csv file through the run's own view (as `predict --full`);
    a student's fidelity is measured against its teacher on the same series. Nothing is written."""
    from .. import runs
    cfg, record = runs.read_run(run_dir)
    if label_column == "run":
        label_column = cfg["data"].get("label_column", 0)
    from ..data.load import read_array_file
    series, labels = read_array_file(test_path, label_column, need_labels=True)
    _, probs, notes = runs.predict(run_dir, series, full=True, what=str(test_path), device=device)
    if warnings is not None:
        warnings.extend(notes["warnings"])
    classes = notes["classes"]
    unknown = sorted(set(labels.tolist()) - set(classes))
    check(not unknown, f"{test_path}: labels {unknown[:5]} are not classes of this run ({', '.join(classes)})")
    y = np.array([classes.index(c) for c in labels])
    teacher_probs = None
    if record["kind"] == "student":
        check(cfg.get("teacher") and Path(cfg["teacher"]).is_dir(),
              f"{run_dir}: teacher run not found ({cfg.get('teacher')}); fidelity needs it")
        teacher_probs = runs.predict(cfg["teacher"], series, full=True, what=str(test_path), device=device)[1]
    return classification_metrics(probs, y, teacher_probs)
