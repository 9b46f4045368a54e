"""Wait while the student is uncertain: stop at the first checkpoint whose uncertainty is at most a threshold.

Uncertainty is DLF's mutual information when the anytime student carries DLF heads (`bind` takes them
from the run's `dlf.*` checkpoint tensors): mu is the student's logits, Phi its feature through the
stored head, and the logit draws mu + |Phi| L eps use `samples` fixed standard-normal vectors (seeded),
so a case's value depends on its own prefix only and a stream decides as a batch does. Without DLF
heads the fallback is the entropy of the student's probabilities. The threshold is chosen on
validation by HM among the quantiles of the validation uncertainties and -1 (never early; ties: the
lowest, i.e. most cautious, threshold), below log(classes): a uniform prediction never counts as certain.
"""
from __future__ import annotations

import numpy as np

from ..errors import check
from .base import Policy, register, softmax

QUANTILES = np.linspace(0.0, 1.0, 41)


def _entropy(probs: np.ndarray, axis: int = -1) -> np.ndarray:
    return -(probs * np.log(np.clip(probs, 1e-30, None))).sum(axis)


def dlf_heads(tensors: dict) -> dict | None:
    """The DLF heads of a checkpoint's tensors as plain lists (phi weight and bias, L), or None."""
    if "dlf.phi.weight" not in tensors:
        return None
    import torch
    import torch.nn.functional as F
    L = torch.tril(tensors["dlf.l_lower"], -1) + torch.diag(F.softplus(tensors["dlf.l_diag"]))
    return {"phi_weight": tensors["dlf.phi.weight"].double().tolist(),
            "phi_bias": tensors["dlf.phi.bias"].double().tolist(), "L": L.double().tolist()}


@register
class UncertaintyPolicy(Policy):
    name = "uncertainty"
    description = ("wait while uncertainty > threshold (DLF mutual information; else entropy of the student's "
                   "probabilities), threshold by validation HM")
    defaults = {"threshold": 0.1, "samples": 32, "seed": 0, "heads": None}
    needs_features = True

    @property
    def measure(self) -> str:
        return "mutual_info" if self.params["heads"] is not None else "entropy"

    def bind(self, tensors: dict) -> "UncertaintyPolicy":
        self.params["heads"] = dlf_heads(tensors)
        return self

    def uncertainty(self, logits: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        """(cases,) mutual information of the DLF predictive, or the entropy of softmax(logits)."""
        heads = self.params["heads"]
        if heads is None:
            return _entropy(softmax(logits))
        check(features is not None, "policy 'uncertainty' with DLF heads needs the student's feature at each checkpoint")
        phi = features @ np.asarray(heads["phi_weight"]).T + np.asarray(heads["phi_bias"])
        eps = np.random.default_rng(self.params["seed"]).standard_normal((self.params["samples"], logits.shape[1]))
        draws = logits[None] + np.linalg.norm(phi, axis=1)[None, :, None] * (eps @ np.asarray(heads["L"]).T)[:, None]
        probs = softmax(draws)
        return np.maximum(_entropy(probs.mean(0)) - _entropy(probs).mean(0), 0.0)

    def step(self, state, checkpoint, logits, features=None):
        return self.uncertainty(logits, features) <= self.params["threshold"]

    def calibrate(self, logits, y, earliness, features=None, ready=None):
        seen = [self.uncertainty(level, None if features is None else features[k]) for k, level in enumerate(logits)]
        grid = np.unique(np.quantile(np.concatenate(seen), QUANTILES))
        self._grid = grid[grid < np.log(logits.shape[-1]) - 1e-9]   # a uniform prediction is never certain
        return super().calibrate(logits, y, earliness, features, ready)

    def candidates(self) -> list[dict]:
        grid = getattr(self, "_grid", None)
        return [{}] if grid is None else [{"threshold": -1.0}] + [{"threshold": float(t)} for t in grid]
