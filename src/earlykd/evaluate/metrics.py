"""Test metrics of docs/protocol.md, computed with scikit-learn where it has them."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, auc, average_precision_score, log_loss, precision_recall_curve, roc_auc_score


def _present(y: np.ndarray, n_classes: int) -> list[int]:
    """Classes with at least one positive and one negative case (one-vs-rest is defined)."""
    return [k for k in range(n_classes) if 0 < (y == k).sum() < len(y)]


def _macro(score, probs: np.ndarray, y: np.ndarray) -> float:
    """Mean of a one-vs-rest score over the classes where it is defined (NaN if none is)."""
    values = [score(y == k, probs[:, k]) for k in _present(y, probs.shape[1])]
    return float(np.mean(values)) if values else float("nan")


def _trapezoid_pr(positive: np.ndarray, scores: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(positive, scores)
    return auc(recall, precision)


def macro_auc_prc(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean over classes of the trapezoid area under each one-vs-rest PR curve (binary: both columns)."""
    return _macro(_trapezoid_pr, probs, y)


def macro_average_precision(probs: np.ndarray, y: np.ndarray) -> float:
    return _macro(average_precision_score, probs, y)


def macro_roc_auc(probs: np.ndarray, y: np.ndarray) -> float:
    return _macro(roc_auc_score, probs, y)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins (right-closed)."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def classification_metrics(probs: np.ndarray, y: np.ndarray, teacher_probs: np.ndarray | None = None) -> dict:
    probs = np.asarray(probs, dtype=np.float64)
    if not np.isfinite(probs).all():
        from ..errors import EarlykdError
        raise EarlykdError("the model's probabilities are not finite (NaN): its training diverged; check the "
                           "method's options (e.g. a temperature of 0) and the learning rate")
    probs = probs / probs.sum(1, keepdims=True)  # float32 softmax rows, renormalised in float64
    y = np.asarray(y)
    k = probs.shape[1]
    out = {
        "auc_prc": macro_auc_prc(probs, y),
        "average_precision": macro_average_precision(probs, y),
        "accuracy": float(accuracy_score(y, probs.argmax(1))),
        "roc_auc": macro_roc_auc(probs, y),
        "nll": float(log_loss(y, np.clip(probs, 1e-12, 1.0), labels=list(range(k)))),
        "ece": expected_calibration_error(probs, y),
    }
    if teacher_probs is not None:
        t = np.asarray(teacher_probs, dtype=np.float64)
        out["fidelity_top1"] = float((probs.argmax(1) == t.argmax(1)).mean())
        kl = (t * (np.log(np.clip(t, 1e-12, 1)) - np.log(np.clip(probs, 1e-12, 1)))).sum(1)
        out["fidelity_kl"] = float(kl.mean())
    return out
