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
    series, labels = read_labelled(cfg, test_path, label_column)
    _, probs, notes = runs.predict(run_dir, series, full=True, what=str(test_path), device=device)
    if warnings is not None:
        warnings.extend(notes["warnings"])
    y = class_indices(labels, notes["classes"], test_path)
    teacher_probs = None
    if record["kind"] == "student":
        check(cfg.get("teacher") and Path(cfg["teacher"]).is_dir(),
              f"{run_dir}: teacher run not found ({cfg.get('teacher')}); fidelity needs it")
        teacher_probs = runs.predict(cfg["teacher"], series, full=True, what=str(test_path), device=device)[1]
    return classification_metrics(probs, y, teacher_probs)


def read_labelled(cfg: dict, test_path: str | Path, label_column="run") -> tuple[list[np.ndarray], np.ndarray]:
    """(series, labels) of a labelled file, its label column as the run's training data had it ("run")."""
    from ..data.load import read_array_file
    if label_column == "run":
        label_column = cfg["data"].get("label_column", 0)
    return read_array_file(test_path, label_column, need_labels=True)


def class_indices(labels: np.ndarray, classes, test_path: str | Path) -> np.ndarray:
    """Each label's index among the run's classes; one line naming labels the run was not trained on."""
    classes = list(classes)
    unknown = sorted(set(labels.tolist()) - set(classes))
    check(not unknown, f"{test_path}: labels {unknown[:5]} are not classes of this run ({', '.join(map(str, classes))})")
    return np.array([classes.index(c) for c in labels])
