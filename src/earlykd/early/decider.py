"""An anytime student with a calibrated policy, deciding checkpoint by checkpoint as series arrive.

A checkpoint is an earliness level e; a series has reached it once it holds ceil(e * T) raw
samples. Its input is `student_view` of the samples so far, which by the prefix contract equals
the view of the whole series at e: a stream and a batch of whole series get the same inputs, and
the policy's per-case state makes them get the same decisions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..decide import Policy, decide
from ..decide.base import softmax
from ..errors import check
from ..models import Classifier, at_level
from ..prefix import observed_samples, ready_checkpoints, student_view
from ..train import predict_logits
from .anytime import predict_outputs


def checkpoint_samples(levels: list[float], reference_length: int) -> np.ndarray:
    """Raw samples a series needs to reach each checkpoint."""
    return np.array([observed_samples(e, reference_length) for e in levels])


def checkpoint_earliness(levels: list[float], reference_length: int) -> np.ndarray:
    """Share of the series seen at each checkpoint (what HM counts)."""
    return checkpoint_samples(levels, reference_length) / reference_length


@dataclass
class Decider:
    student: Classifier
    policy: Policy
    levels: list[float]          # checkpoints, increasing; the last is 1.0
    mode: str
    channels: list[int] | None   # the student's channel subset, if any
    reference_length: int        # T
    length: int                  # L
    mean: torch.Tensor
    std: torch.Tensor
    classes: list

    @property
    def samples(self) -> np.ndarray:
        return checkpoint_samples(self.levels, self.reference_length)

    def ready(self, series: list[np.ndarray]) -> np.ndarray:
        """Per series, the first checkpoint at which it holds an observed value (prefix.ready_checkpoints)."""
        return ready_checkpoints(series, self.samples, self.channels)

    @property
    def earliness(self) -> np.ndarray:
        return checkpoint_earliness(self.levels, self.reference_length)

    def reached(self, n_samples: int) -> int:
        """How many checkpoints a series of `n_samples` samples has passed."""
        return int((self.samples <= n_samples).sum())

    def logits(self, series: list[np.ndarray], checkpoint: int) -> np.ndarray:
        x = student_view(series, self.levels[checkpoint], self.mode, self.reference_length, self.length,
                         self.mean, self.std, self.channels)
        with at_level(self.student, checkpoint):
            return predict_logits(self.student, x).numpy().astype(np.float64)

    def outputs(self, series: list[np.ndarray], checkpoint: int) -> tuple[np.ndarray, np.ndarray]:
        """(logits, feature) of the student at `checkpoint`, for policies that read the feature too."""
        x = student_view(series, self.levels[checkpoint], self.mode, self.reference_length, self.length,
                         self.mean, self.std, self.channels)
        with at_level(self.student, checkpoint):
            logits, feature = predict_outputs(self.student, x)
        return logits.numpy().astype(np.float64), feature.numpy().astype(np.float64)

    def start(self, cases: int) -> dict:
        return {"next": 0, "policy": self.policy.start(cases), "stop": np.full(cases, -1),
                "probs": np.zeros((cases, len(self.classes)))}

    def advance(self, state: dict, series: list[np.ndarray]) -> None:
        """Run the checkpoints the series have newly reached, for the cases not yet decided."""
        check(len(series) == len(state["stop"]),
              f"{len(series)} series given but {len(state['stop'])} are awaiting a decision "
              "(pass the undecided series, in order, or reset the state)")
        shortest = min(s.shape[-1] for s in series) if series else 0
        seen = int(self.samples[state["next"] - 1]) if state["next"] else 0
        check(not series or shortest >= seen, f"a series of {shortest} samples is shorter than the {seen} already "
                                              "decided on: pass each series as far as it has arrived, or start anew")
        reached = self.reached(shortest)
        last = len(self.levels) - 1
        ready = self.ready(series)   # a case decides only once it holds a value
        for c in range(state["next"], reached):
            if not (state["stop"] < 0).any():
                break
            open_ = np.flatnonzero((state["stop"] < 0) & (ready <= c))
            if not len(open_):
                continue
            features = None
            if self.policy.needs_features:
                logits, features = self.outputs([series[i] for i in open_], c)
            else:
                logits = self.logits([series[i] for i in open_], c)
            sub = {k: v[open_] for k, v in state["policy"].items()}
            stop = decide(self.policy, sub, c, last, logits, features)
            for k, v in sub.items():
                state["policy"][k][open_] = v
            state["stop"][open_[stop]] = c
            state["probs"][open_[stop]] = softmax(logits[stop])
        state["next"] = max(state["next"], reached)

