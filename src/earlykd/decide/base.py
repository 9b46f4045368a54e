"""The stopping-policy interface: calibrate on validation logits, then decide checkpoint by checkpoint.

A policy sees the student's logits at checkpoints of growing earliness, one checkpoint at a time,
and keeps per-case state (arrays indexed by case), so a stream and a batch of whole series go
through the same steps. At the last checkpoint every case is decided. Policies are calibrated on
the validation split only, by the harmonic mean (HM) of accuracy and 1 - earliness that aeon's
early classifiers report.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..errors import EarlykdError, check, lookup, register_in


def harmonic_mean(accuracy: float, earliness: float) -> float:
    """HM of accuracy and 1 - earliness (0 when both are 0)."""
    timeliness = 1.0 - earliness
    total = accuracy + timeliness
    return float(2 * accuracy * timeliness / total) if total > 0 else 0.0


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


class Policy:
    """Subclasses set `name`, `description`, `defaults`, and implement `start`, `step` and `candidates`.

    A policy with `needs_features` also gets the student's feature (cases, feature_dim) at each checkpoint:
    `step(state, checkpoint, logits, features)`; `features` is None where only logits are at hand."""
    name: ClassVar[str]
    description: ClassVar[str]
    defaults: ClassVar[dict] = {}
    needs_features: ClassVar[bool] = False

    def __init__(self, **params):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise EarlykdError(f"unknown setting {unknown[0]!r} for policy '{self.name}' "
                               f"(known: {', '.join(self.defaults)})")
        self.params = {**self.defaults, **params}

    # -- deciding -------------------------------------------------------------------------------
    def start(self, cases: int) -> dict[str, np.ndarray]:
        """Fresh per-case state."""
        return {}

    def step(self, state: dict[str, np.ndarray], checkpoint: int, logits: np.ndarray) -> np.ndarray:
        """Update `state` with the logits (cases, classes) at `checkpoint`; -> bool mask: stop now."""
        raise NotImplementedError

    # -- calibration on validation ------------------------------------------------------------
    def fit_extra(self, logits: np.ndarray, y: np.ndarray) -> None:
        """Settings learned from validation before the search (e.g. temperatures)."""

    def bind(self, tensors: dict) -> "Policy":
        """Take what the policy reads from the trained method's checkpoint tensors (e.g. DLF heads); -> self."""
        return self

    def candidates(self) -> list[dict]:
        """The settings searched on validation, in order of preference on ties."""
        return [{}]

    def calibrate(self, logits: np.ndarray, y: np.ndarray, earliness: np.ndarray,
                  features: np.ndarray | None = None, ready: np.ndarray | None = None) -> "Policy":
        """Choose the candidate with the highest validation HM (ties: higher accuracy, then the first).

        logits: (checkpoints, cases, classes); earliness: the share of the series seen at each checkpoint;
        features: (checkpoints, cases, feature_dim), for policies that read them; ready: see `first_stops`."""
        self.fit_extra(logits, y)
        best = None
        for candidate in self.candidates():
            self.params.update(candidate)
            hm, acc, earl = self.score(logits, y, earliness, features, ready)
            if best is None or (hm, acc) > best[0]:
                best = ((hm, acc), dict(candidate), {"hm": hm, "accuracy": acc, "earliness": earl})
        self.params.update(best[1])
        self.validation = best[2]
        return self

    def score(self, logits: np.ndarray, y: np.ndarray, earliness: np.ndarray,
              features: np.ndarray | None = None, ready: np.ndarray | None = None) -> tuple[float, float, float]:
        """(HM, accuracy, mean earliness) of the decisions on labelled cases."""
        stops = first_stops(self, logits, features, ready)
        predicted = logits[stops, np.arange(len(stops))].argmax(-1)
        acc = float((predicted == y).mean())
        earl = float(np.asarray(earliness)[stops].mean())
        return harmonic_mean(acc, earl), acc, earl

    # -- storage ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"name": self.name, "params": {k: _plain(v) for k, v in self.params.items()}}


def _plain(value):
    return value.tolist() if isinstance(value, np.ndarray) else value


def decide(policy: Policy, state: dict, checkpoint: int, last: int, logits: np.ndarray,
           features: np.ndarray | None = None) -> np.ndarray:
    """The policy's stop mask at `checkpoint`; at the last checkpoint every case stops."""
    if policy.needs_features:
        stop = policy.step(state, checkpoint, logits, features)
    else:
        stop = policy.step(state, checkpoint, logits)
    return np.ones(len(logits), dtype=bool) if checkpoint == last else stop


def first_stops(policy: Policy, logits: np.ndarray, features: np.ndarray | None = None,
                ready: np.ndarray | None = None) -> np.ndarray:
    """Checkpoint index at which each case stops, from logits (checkpoints, cases, classes). `ready`: per case, the
    first checkpoint at which it holds an observed value (prefix.ready_checkpoints; default 0); before it the case
    is skipped, its policy state untouched, as the Decider skips it in a stream."""
    checkpoints, cases = logits.shape[:2]
    state = policy.start(cases)
    stops = np.full(cases, -1)
    ready = np.zeros(cases, dtype=np.int64) if ready is None else np.asarray(ready)
    for c in range(checkpoints):   # the open cases only, as the Decider steps them (a policy decides per case)
        open_ = np.flatnonzero((stops < 0) & (ready <= c))
        if not len(open_):
            continue
        sub = {k: v[open_] for k, v in state.items()}
        stop = decide(policy, sub, c, checkpoints - 1, logits[c][open_], None if features is None else features[c][open_])
        for k, v in sub.items():
            state[k][open_] = v
        stops[open_[stop]] = c
    return stops


POLICIES: dict[str, type[Policy]] = {}


def register(cls: type[Policy]) -> type[Policy]:
    return register_in(POLICIES, cls.name, cls, "policy")


def policy_class(name: str) -> type[Policy]:
    return lookup(POLICIES, name, "policy")


def build_policy(spec: str | dict) -> Policy:
    """A policy from its name, or from the dict `to_dict` stored."""
    if isinstance(spec, str):
        return policy_class(spec)()
    return policy_class(spec["name"])(**spec.get("params", {}))


def folds_of(y: np.ndarray, k: int) -> np.ndarray:
    """Deterministic stratified fold per case: the i-th case of each class goes to fold i mod k."""
    folds = np.zeros(len(y), dtype=int)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        folds[idx] = np.arange(len(idx)) % k
    return folds


CV_FOLDS = 5


def _cases(values: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    """The cases `idx` of per-case values: (cases,) or (checkpoints, cases, dim)."""
    if values is None:
        return None
    values = np.asarray(values)
    return values[idx] if values.ndim == 1 else values[:, idx]


def cross_validated(name: str, tensors: dict, logits: np.ndarray, y: np.ndarray, earliness: np.ndarray,
                    features: np.ndarray | None = None, ready: np.ndarray | None = None,
                    folds: int = CV_FOLDS) -> dict[str, float]:
    """{"cv_hm", "cv_accuracy", "cv_earliness"} of the policy's decisions out of fold: the cases in `folds`
    stratified folds, each fold decided by the policy calibrated on the others. The HM `calibrate` reports is
    the best of its own search on the cases it searched; this one estimates how the calibrated policy does on
    cases it has not seen (None with fewer than two cases)."""
    y = np.asarray(y)
    if len(y) < 2:
        return {"cv_hm": None, "cv_accuracy": None, "cv_earliness": None}
    fold = folds_of(y, min(folds, len(y)))
    if len(np.unique(fold)) < 2:   # one case per class: no stratified split, so plain round-robin
        fold = np.arange(len(y)) % min(folds, len(y))
    right, spent = np.zeros(len(y), dtype=bool), np.zeros(len(y))
    for f in np.unique(fold):
        held, fit = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        policy = build_policy(name).bind(tensors).calibrate(logits[:, fit], y[fit], earliness,
                                                            _cases(features, fit), _cases(ready, fit))
        stops = first_stops(policy, logits[:, held], _cases(features, held), _cases(ready, held))
        right[held] = logits[stops, held].argmax(-1) == y[held]
        spent[held] = np.asarray(earliness)[stops]
    acc, earl = float(right.mean()), float(spent.mean())
    return {"cv_hm": harmonic_mean(acc, earl), "cv_accuracy": acc, "cv_earliness": earl}


def calibrate_policies(names: list[str], logits: np.ndarray, y: np.ndarray, earliness: np.ndarray,
                       features: np.ndarray | None = None, tensors: dict | None = None,
                       ready: np.ndarray | None = None) -> dict[str, Policy]:
    """Each named policy, built, bound to the method's tensors and calibrated on these held-out outputs; its
    `validation` holds the calibration's own HM and the cross-validated one (`cross_validated`)."""
    out = {}
    for name in names:
        policy = build_policy(name).bind(tensors or {}).calibrate(logits, y, earliness, features, ready)
        policy.validation.update(cross_validated(name, tensors or {}, logits, y, earliness, features, ready))
        out[name] = policy
    return out


def selection_key(validation: dict) -> tuple[float, float]:
    """What a choice among calibrated policies ranks by: the cross-validated (HM, accuracy) where measured, else
    the calibration's own (records from before the cross-validated figures)."""
    if validation.get("cv_hm") is not None:
        return validation["cv_hm"], validation["cv_accuracy"]
    return validation["hm"], validation["accuracy"]


def best_on_validation(policies: dict[str, Policy]) -> str:
    """The name of the calibrated policy of highest cross-validated validation HM (`selection_key`; ties: higher
    accuracy, then the first in `policies`' order)."""
    check(len(policies) > 0, "no calibrated policy to choose from")
    return max(policies, key=lambda name: selection_key(policies[name].validation))


AUTO = "auto"   # every registered policy calibrated, the one of highest cross-validated validation HM decides


def policy_names(names: list[str]) -> list[str] | None:
    """Policy names as a user gives them: None for ["auto"] (every registered policy, validation picks), else the
    names, each registered; one line for an unknown name (close matches, 'auto' among them) or auto with others."""
    if AUTO in names:
        check(names == [AUTO], "policy auto calibrates every registered policy and takes no other names")
        return None
    for name in names:
        lookup(dict.fromkeys([*POLICIES, AUTO]), name, "policy")   # the registry's one line, auto among the names
    return names
