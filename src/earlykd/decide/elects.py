"""A learned halting head (ELECTS-style) on a frozen anytime student, fitted on validation only.

At checkpoint k the head reads the student's feature, the checkpoint's earliness e_k and the student's top
probability, and outputs d_k, the probability of stopping at k having not stopped before; the last
checkpoint stops for sure. So P_k = d_k * prod_{j<k} (1 - d_j) is a distribution over the stopping
checkpoint. Per case the head minimises
    alpha * sum_k P_k * (-log p_k(y))  -  (1 - alpha) * sum_k P_k * p_k(y) * (1 - e_k)
plus penalty * |w|^2. A case stops at the first checkpoint where the probability of having stopped,
1 - prod_{j<=k} (1 - d_j), reaches `quantile`. alpha, penalty and quantile are chosen by validation HM
with cross-fitting (each fold's head is scored on the fold it was not fitted on); the head is then refit
on the whole validation split. See docs/early.md.
"""
from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from threadpoolctl import threadpool_limits

from ..errors import check
from .base import Policy, folds_of, harmonic_mean, register, softmax

ALPHAS = (0.9, 0.7, 0.5, 0.3, 0.1)
PENALTIES = (1e-2, 1e-4)
QUANTILES = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05)
FOLDS = 5
ITERATIONS = 200


def stop_distribution(hazard: np.ndarray) -> np.ndarray:
    """(checkpoints, cases) probabilities of stopping at each checkpoint from the halting probabilities d_k;
    the last checkpoint takes what is left, so each column sums to one."""
    d = np.concatenate([hazard[:-1], np.ones_like(hazard[-1:])])
    return _survival(d) * d


def _survival(d: np.ndarray) -> np.ndarray:
    """prod_{j<k} (1 - d_j) for each checkpoint k (1 at the first)."""
    return np.cumprod(np.concatenate([np.ones_like(d[:1]), 1 - d[:-1]]), 0)


def checkpoint_costs(log_true: np.ndarray, earliness: np.ndarray, alpha: float) -> np.ndarray:
    """alpha * CE_k - (1 - alpha) * p_k(y) * (1 - e_k): the loss of stopping at k, (checkpoints, cases)."""
    return alpha * -log_true - (1 - alpha) * np.exp(log_true) * (1 - np.asarray(earliness)[:, None])


def elects_loss(hazard: np.ndarray, log_true: np.ndarray, earliness: np.ndarray, alpha: float) -> float:
    """Mean over cases of alpha * E[CE at the stop] - (1 - alpha) * E[p(true class) * (1 - e) at the stop].

    hazard, log_true: (checkpoints, cases), log_true the student's log-probability of the true class."""
    return float((stop_distribution(hazard) * checkpoint_costs(log_true, earliness, alpha)).sum(0).mean())


def _objective(theta: np.ndarray, z: np.ndarray, costs: np.ndarray, penalty: float) -> tuple[float, np.ndarray]:
    """Loss and gradient in the head's weights theta = [w, b] (z: (checkpoints, cases, dim) inputs).

    With d_k = sigmoid(a_k), S_k = prod_{j<k} (1 - d_j) and P_k = S_k d_k, the derivative of sum_k P_k c_k
    in a_m (m before the last) is d_m * (S_{m+1} c_m - sum_{k>m} P_k c_k)."""
    w, b = theta[:-1], theta[-1]
    d = expit(z[:-1] @ w + b)
    d = np.concatenate([d, np.ones_like(costs[-1:])])
    survive = _survival(d)
    spent = survive * d * costs
    later = np.cumsum(spent[::-1], 0)[::-1]                 # sum_{k>=m} P_k c_k
    grad_a = d[:-1] * (survive[1:] * costs[:-1] - later[1:])
    n = costs.shape[1]
    value = spent.sum() / n + penalty * w @ w
    grad = np.concatenate([np.einsum("kn,knd->d", grad_a, z[:-1]) / n + 2 * penalty * w, [grad_a.sum() / n]])
    return float(value), grad


def head_inputs(source: np.ndarray, logits: np.ndarray, earliness: float | np.ndarray) -> np.ndarray:
    """[source values, earliness, top probability] per case: (..., cases, dim + 2)."""
    source, logits = np.asarray(source, np.float64), np.asarray(logits, np.float64)
    e = np.asarray(earliness, np.float64)
    e = np.broadcast_to(e[:, None] if source.ndim == 3 else e, source.shape[:-1])
    return np.concatenate([source, e[..., None], softmax(logits).max(-1, keepdims=True)], -1)


def fit_head(x: np.ndarray, log_true: np.ndarray, earliness: np.ndarray, alpha: float, penalty: float) -> dict:
    """Weights of the linear halting head on inputs x (checkpoints, cases, dim), standardised on x itself."""
    rows = x.reshape(-1, x.shape[-1])
    center, scale = rows.mean(0), rows.std(0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    theta = np.zeros(x.shape[-1] + 1)
    if len(x) > 1:  # one checkpoint: nothing to decide
        costs = checkpoint_costs(log_true, earliness, alpha)
        found = minimize(_objective, theta, args=((x - center) / scale, costs, penalty), jac=True,
                         method="L-BFGS-B", options={"maxiter": ITERATIONS})
        theta = found.x
    return {"weight": theta[:-1].tolist(), "bias": float(theta[-1]), "center": center.tolist(),
            "scale": scale.tolist()}


def hazard_of(head: dict, x: np.ndarray) -> np.ndarray:
    """Halting probabilities d for inputs x (..., dim)."""
    z = (x - np.asarray(head["center"])) / np.asarray(head["scale"])
    return expit(z @ np.asarray(head["weight"]) + head["bias"])


def quantile_stops(hazard: np.ndarray, quantile: float) -> np.ndarray:
    """First checkpoint where 1 - prod_{j<=k} (1 - d_j) >= quantile (the last if none), per case."""
    stopped = 1.0 - np.cumprod(1.0 - hazard, 0)
    reach = stopped[:-1] >= quantile
    return np.where(reach.any(0), reach.argmax(0), len(hazard) - 1)


@register
class ElectsPolicy(Policy):
    name = "elects"
    description = ("learned halting head on the student's feature (ELECTS-style loss), alpha and stop "
                   "quantile chosen by cross-fitted validation HM")
    defaults = {"alpha": 0.5, "penalty": 1e-2, "quantile": 0.5, "reads": "feature", "earliness": None,
                "weight": None, "bias": 0.0, "center": None, "scale": None}
    needs_features = True

    def start(self, cases: int) -> dict[str, np.ndarray]:
        return {"survival": np.ones(cases)}

    def step(self, state, checkpoint, logits, features=None) -> np.ndarray:
        p = self.params
        if p["weight"] is None:  # not calibrated: never stops before the last checkpoint
            return np.zeros(len(logits), dtype=bool)
        check(checkpoint < len(p["earliness"]), f"the elects policy was calibrated for {len(p['earliness'])} "
                                                f"checkpoints, got checkpoint {checkpoint}")
        source = logits if p["reads"] == "logits" else features
        check(source is not None, "the elects policy reads the student's feature; none was given")
        x = head_inputs(source, logits, p["earliness"][checkpoint])
        check(x.shape[-1] == len(p["weight"]), f"the elects head expects {len(p['weight']) - 2} {p['reads']} "
                                               f"values per case, got {x.shape[-1] - 2}")
        state["survival"] = state["survival"] * (1.0 - hazard_of(p, x))
        return 1.0 - state["survival"] >= p["quantile"]

    def candidates(self) -> list[dict]:
        return [{"alpha": a, "penalty": r, "quantile": q} for a in ALPHAS for r in PENALTIES for q in QUANTILES]

    def calibrate(self, logits, y, earliness, features=None, ready=None) -> "ElectsPolicy":
        """Head, alpha, penalty and quantile from the validation split (features None: the head reads logits);
        a case's halting starts at its first level with an observed value (`ready`, as in first_stops)."""
        logits, y = np.asarray(logits, np.float64), np.asarray(y)
        earliness = np.asarray(earliness, np.float64)
        check(len(earliness) == len(logits), f"{len(earliness)} earliness values for {len(logits)} checkpoints")
        check(len(y) > 0, "the elects policy is fitted on validation cases: none were given")
        reads = "logits" if features is None else "feature"
        x = head_inputs(logits if features is None else features, logits, earliness)
        z = logits - logits.max(-1, keepdims=True)
        log_true = (z - np.log(np.exp(z).sum(-1, keepdims=True)))[:, np.arange(len(y)), y]
        folds = folds_of(y, min(FOLDS, len(y)))
        best = None
        with threadpool_limits(1):  # tiny problems: BLAS threads only contend
            for alpha, penalty in itertools.product(ALPHAS, PENALTIES):
                hazard = self._cross_fitted(x, log_true, earliness, folds, alpha, penalty)
                if ready is not None:   # skipped checkpoints leave the survival untouched
                    hazard[np.arange(len(hazard))[:, None] < np.asarray(ready)[None]] = 0.0
                for q in QUANTILES:
                    stops = quantile_stops(hazard, q)
                    acc = float((logits[stops, np.arange(len(y))].argmax(-1) == y).mean())
                    earl = float(earliness[stops].mean())
                    hm = harmonic_mean(acc, earl)
                    if best is None or (hm, acc) > best[0]:
                        best = ((hm, acc), {"alpha": alpha, "penalty": penalty, "quantile": q},
                                {"hm": hm, "accuracy": acc, "earliness": earl})
            head = fit_head(x, log_true, earliness, best[1]["alpha"], best[1]["penalty"])
        self.params.update(best[1], reads=reads, earliness=earliness.tolist(), **head)
        self.validation = best[2]
        return self

    @staticmethod
    def _cross_fitted(x, log_true, earliness, folds, alpha, penalty) -> np.ndarray:
        """(checkpoints, cases) halting probabilities, each case's from a head fitted without its fold."""
        hazard = np.empty(log_true.shape)
        for f in np.unique(folds):
            held = folds == f
            fit = ~held if (~held).any() else held
            hazard[:, held] = hazard_of(fit_head(x[:, fit], log_true[:, fit], earliness, alpha, penalty), x[:, held])
        return hazard
