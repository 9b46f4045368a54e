"""Temperature scaling per checkpoint on validation; stop when the calibrated top probability reaches a target.

Each checkpoint gets the temperature that minimises the validation negative log-likelihood (a
bounded one-dimensional search over log-temperature); the target is then chosen on validation to
maximise HM.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from .base import Policy, register, softmax

TARGETS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99, 0.995, 0.999)
LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the mean NLL of softmax(logits / T) on (cases, classes) logits."""
    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(-1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(-1)) - z[np.arange(len(y)), y]))
    found = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


@register
class CalibratedPolicy(Policy):
    name = "calibrated"
    description = "temperature scaling per checkpoint on validation; stop when calibrated top probability >= target"
    defaults = {"target": 0.9, "temperatures": None}

    def step(self, state: dict[str, np.ndarray], checkpoint: int, logits: np.ndarray) -> np.ndarray:
        temperatures = self.params["temperatures"]
        t = 1.0 if temperatures is None else temperatures[checkpoint]
        return softmax(logits / t).max(-1) >= self.params["target"]

    def fit_extra(self, logits: np.ndarray, y: np.ndarray) -> None:
        self.params["temperatures"] = [fit_temperature(level, y) for level in logits]

    def candidates(self) -> list[dict]:
        return [{"target": t} for t in reversed(TARGETS)]
