"""Stop when the top probability reaches p at k consecutive checkpoints that agree on the class.

The rule of aeon's ProbabilityThresholdEarlyClassifier: a checkpoint whose top probability is at
least p counts one more if it predicts the class of the checkpoint before, else it restarts the
count at one; a checkpoint below p resets it to zero. p and k are chosen on validation.
"""
from __future__ import annotations

import numpy as np

from .base import Policy, register, softmax

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999)
RUNS = (1, 2, 3, 4, 5)


@register
class ThresholdPolicy(Policy):
    name = "threshold"
    description = "top probability >= p at k consecutive checkpoints agreeing on the class (aeon's rule)"
    defaults = {"probability": 0.85, "consecutive": 1}

    def start(self, cases: int) -> dict[str, np.ndarray]:
        return {"count": np.zeros(cases, dtype=np.int64), "last": np.full(cases, -1)}

    def step(self, state: dict[str, np.ndarray], checkpoint: int, logits: np.ndarray) -> np.ndarray:
        probs = softmax(logits)
        predicted = probs.argmax(-1)
        confident = probs.max(-1) >= self.params["probability"]
        agree = predicted == state["last"]
        state["count"] = np.where(confident, np.where(agree, state["count"] + 1, 1), 0)
        state["last"] = predicted
        return state["count"] >= self.params["consecutive"]

    def candidates(self) -> list[dict]:
        # most cautious first, so that ties keep the safer setting
        return [{"probability": p, "consecutive": k} for k in reversed(RUNS) for p in reversed(THRESHOLDS)]
