"""`earlykd.EarlyClassifier`: aeon's BaseEarlyClassifier contract around a teacher, an anytime student and a policy.

fit(X, y) trains a teacher on whole series, distils an anytime student with `method` on prefixes at
every earliness level, and calibrates `policy` on a stratified validation split of X (never on
anything else; `policy="auto"`, the default, calibrates every registered policy and keeps the one of
highest cross-validated validation HM, named in `policy_`); with `crossfit = K` on K-fold out-of-fold predictions of
all of X, the student then trained on all of X (docs/early.md). predict / predict_proba run the checkpoints a series has
reached; update_predict / update_predict_proba continue from the state of the previous call for the
cases still undecided (decided cases leave the input, order kept, as aeon specifies). Undecided
cases get label -1 and probabilities of -1, as in aeon. `state_info` is a NumPy record array with
one row per case of the last call (aeon's contract): fields `next` (checkpoints passed), `stop`
(checkpoint of the decision, -1 while undecided), `probs`, and the policy's per-case state as
`policy.<name>`.
"""
from __future__ import annotations

import numpy as np
import torch
from aeon.classification.early_classification import BaseEarlyClassifier

from .. import threads as cpu_threads
from ..data import RawData, prepare
from ..data.prepare import NO_VAL
from ..decide import AUTO, POLICIES, best_on_validation, calibrate_policies, harmonic_mean, policy_names
from ..distill import TeacherOutputs, build_method
from ..distill.base import method_class
from ..errors import EarlykdError, check, lookup
from ..models import ARCHITECTURES, build_model
from ..prefix import MODES, check_cases
from ..train import Split, Trainer
from .anytime import anytime_options, checkpoints, parse_levels, student_train_cfg, train_anytime
from .crossfit import crossfit_anytime
from .decider import Decider, checkpoint_earliness

TRAIN = {"lr": 1e-3, "weight_decay": 1e-5, "schedule": "constant", "patience": None, "checkpoint_every": 0,
         "progress": False, "warmup": None}


class EarlyInputError(EarlykdError, ValueError):
    """Bad input to the estimator (a ValueError too, as aeon's estimators raise)."""


def _some_cases(X):
    """X, or one line when it holds no case (aeon would fail inside with an IndexError)."""
    if hasattr(X, "__len__") and len(X) == 0:
        raise EarlyInputError("update_predict got no cases: it takes the cases not yet decided, and every case is "
                              "decided (start anew with predict)")
    return X


class EarlyClassifier(BaseEarlyClassifier):
    """An early classifier by full-to-partial distillation that decides when to stop."""

    _tags = {"capability:multivariate": True, "capability:missing_values": True, "algorithm_type": "deeplearning",
             "non_deterministic": False, "X_inner_type": "numpy3D"}

    def __init__(self, method: str = "kd", policy: str = AUTO, arch: str = "fcn", layers: int | None = None,
                 hidden: int | None = None, epochs: int = 100, teacher_epochs: int | None = None,
                 batch_size: int = 16, levels=None, mode: str = "truncate", length: int = 100,
                 val_fraction: float = 0.2, options: dict | None = None, random_state: int = 0,
                 device: str = "cpu", threads: int | None = None, crossfit: int = 0):
        self.method, self.policy, self.arch, self.layers, self.hidden = method, policy, arch, layers, hidden
        self.epochs, self.teacher_epochs, self.batch_size, self.levels = epochs, teacher_epochs, batch_size, levels
        self.mode, self.length, self.val_fraction, self.options = mode, length, val_fraction, options
        self.random_state, self.device, self.threads, self.crossfit = random_state, device, threads, crossfit
        super().__init__()

    def update_predict(self, X):
        return super().update_predict(_some_cases(X))

    def update_predict_proba(self, X):
        return super().update_predict_proba(_some_cases(X))

    @classmethod
    def _get_test_params(cls, parameter_set: str = "default") -> list[dict]:
        """Tiny configurations for aeon's estimator checks (seconds on one core), one per registered policy and one
        with the default "auto"; a few vary the method, levels or calibration so that those paths are checked too."""
        tiny = {"hidden": 4, "layers": 1, "epochs": 2, "batch_size": 8, "length": 16, "threads": 1, "levels": [0.5]}
        vary = {"calibrated": {"method": "base", "levels": [0.3, 0.6]}, "elects": {"crossfit": 2},
                "uncertainty": {"levels": [0.4, 0.8]}}
        return [{**tiny, "policy": name, **vary.get(name, {})} for name in [*POLICIES, AUTO]]

    @classmethod
    def from_run(cls, run_dir, policy: str | None = None) -> "EarlyClassifier":
        """A fitted estimator from an `earlykd early` run directory."""
        from .run import load_decider
        est = cls()
        est._set_decider(load_decider(run_dir, policy))
        # what fit would store (aeon's checks read it, e.g. to convert 2D input); the run's data is not at hand
        shape = (1, len(est.decider_.mean), est.decider_.reference_length)
        est.metadata_ = {**est._get_X_metadata(np.zeros(shape)), "n_cases": None, "missing_values": None}
        est.is_fitted = True
        return est

    def _set_decider(self, decider: Decider) -> None:
        self.decider_ = decider
        self.policy_ = decider.policy.name   # the policy that decides (policy="auto": validation's choice)
        self.classes_ = np.asarray(decider.classes)
        self.n_classes_ = len(self.classes_)
        self._class_dictionary = {c: i for i, c in enumerate(self.classes_)}

    # -- fit ----------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        """One clear line for a bad setting, before any work (the CLI checks the same settings in its config)."""
        from ..config import check_folds, check_whole
        for name, low in (("epochs", 1), ("batch_size", 2), ("length", 2), ("random_state", 0)):
            check_whole(getattr(self, name), name, low)
        for name in ("teacher_epochs", "layers", "hidden", "threads"):
            check_whole(getattr(self, name), name, 1, null=True)
        check_folds(self.crossfit, "crossfit")   # val_fraction: prepare checks it
        lookup(ARCHITECTURES, self.arch, "architecture")
        check(self.options is None or isinstance(self.options, dict), f"options must be a dict, got {self.options!r}")
        anytime_options(self.method, self.options)

    def _fit(self, X: np.ndarray, y: np.ndarray):
        from ..rundir import resolve_device
        try:
            self._check_params()
            device = resolve_device(self.device)
        except EarlykdError as exc:
            raise EarlyInputError(str(exc)) from None
        cpu_threads.apply(self.threads)
        codes = np.array([self._class_dictionary[c] for c in y])
        names = np.array([f"{c:06d}" for c in codes])  # sorts like the class indices
        counts = np.bincount(codes, minlength=self.n_classes_)
        if counts.min() < 2:
            raise EarlyInputError(f"y: class '{self.classes_[counts.argmin()]}' has a single series; the policy is "
                                  "calibrated on a stratified split of X, so every class needs at least 2")
        try:
            data = prepare(RawData("fit", list(X), names, list(X[:1]), names[:1], "arrays"), self.length,
                           self.val_fraction, self.random_state)
            levels = checkpoints(parse_levels(self.levels), data.reference_length, data.length)
            check(isinstance(self.policy, str), f"policy must be a policy's name or 'auto', got {self.policy!r}")
            names = policy_names([self.policy]) or list(POLICIES)
            two_stage = method_class(self.method).two_stage
            check(self.mode in MODES, f"prefix mode must be one of {MODES}, got {self.mode!r}")
        except EarlykdError as exc:   # prepare advises val_fraction 0, which the check below refuses
            raise EarlyInputError(str(exc).replace(NO_VAL, "use a smaller val_fraction")) from None
        if not len(data.labels["val"]):
            raise EarlyInputError("the policy is calibrated on validation: val_fraction must be above 0")
        teacher = self._train_teacher(data, device)
        splits = ("train", "val") if self.crossfit else ("train",)   # crossfit trains on both
        outputs = {s: _outputs(teacher, data.view(s).to(device)) for s in splits}
        train_cfg = student_train_cfg({**TRAIN, "epochs": self.epochs, "batch_size": self.batch_size,
                                       "seed": self.random_state, "select": None, "min_epochs": None},
                                      two_stage)
        args = (data, outputs, self.method, self.options or {}, self._model_cfg(), train_cfg, levels, self.mode, None,
                device)
        if self.crossfit:
            distiller, _, logits, y_cal, ready, _ = crossfit_anytime(*args, int(self.crossfit))
            features, tensors = None, {}   # fold students' features are not comparable (early/crossfit.py)
        else:
            distiller, _, val = train_anytime(*args)
        student = distiller.student.cpu().eval()
        if not self.crossfit:
            logits, features = val.outputs(student)
            y_cal, tensors, ready = data.labels["val"].numpy(), distiller.checkpoint_tensors(), val.ready
        policies = calibrate_policies(names, logits, y_cal, checkpoint_earliness(levels, data.reference_length),
                                      features, tensors, ready)
        self._set_decider(Decider(student, policies[best_on_validation(policies)], levels, self.mode, None,
                                  data.reference_length, data.length, data.mean, data.std, list(self.classes_)))
        return self

    def _model_cfg(self) -> dict:
        return {"arch": self.arch, "layers": self.layers, "hidden": self.hidden}

    def _train_teacher(self, data, device):
        epochs = self.teacher_epochs or self.epochs
        cfg = {**TRAIN, "epochs": epochs, "batch_size": self.batch_size, "seed": self.random_state,
               "select": "acc_loss", "min_epochs": epochs // 4, "warmup": 0}
        torch.manual_seed(self.random_state)
        model = build_model(self.arch, data.channels, data.n_classes, self.layers, self.hidden)
        trainer = Trainer(build_method("base", model, None), cfg, device)
        trainer.fit(Split(*data.split("train")), Split(*data.split("val")))
        return model.eval()

    # -- predict ------------------------------------------------------------------------------------
    def _run(self, X: np.ndarray, state: dict | None) -> tuple[np.ndarray, np.ndarray]:
        if X.shape[1] != len(self.decider_.mean):
            raise EarlyInputError(f"X has {X.shape[1]} channel(s), the model expects {len(self.decider_.mean)}")
        X = np.asarray(X, dtype=np.float64)
        try:
            check_cases(X, "X")
        except EarlykdError as exc:
            raise EarlyInputError(str(exc)) from None
        empty = np.isnan(X).all(axis=(1, 2))
        if empty.any():
            raise EarlyInputError(f"X: case {int(empty.argmax())} is all NaN")
        state = self.decider_.start(len(X)) if state is None else _from_record(state)
        try:
            self.decider_.advance(state, list(np.asarray(X, dtype=np.float64)))
        except EarlykdError as exc:
            raise EarlyInputError(str(exc)) from None
        self.state_info = _to_record(state)
        decided = state["stop"] >= 0
        probs = np.where(decided[:, None], state["probs"], -1.0)
        return probs, decided

    def _predict_proba(self, X):
        return self._run(X, None)

    def _update_predict_proba(self, X):
        return self._run(X, self.state_info[self.state_info["stop"] < 0])

    def _labels(self, out):
        probs, decided = out
        return np.array([self.classes_[p.argmax()] if d else -1 for p, d in zip(probs, decided)]), decided

    def _predict(self, X):
        return self._labels(self._predict_proba(X))

    def _update_predict(self, X):
        return self._labels(self._update_predict_proba(X))

    def _score(self, X, y) -> tuple[float, float, float]:
        """(HM, accuracy, earliness) of the decisions on X, fed as whole series."""
        unknown = sorted({str(c) for c in np.asarray(y)} - {str(c) for c in self.classes_})
        if unknown:
            raise EarlyInputError(f"y holds labels the classifier was not fitted on: {', '.join(unknown[:5])}")
        labels, decided = self._predict(X)
        if not decided.all():
            raise EarlyInputError("score needs whole series: some cases did not reach the last checkpoint")
        accuracy = float(np.mean(labels == np.asarray(y)))
        earliness = float(self.decider_.earliness[self.state_info["stop"]].mean())
        return harmonic_mean(accuracy, earliness), accuracy, earliness

    def decision_checkpoints(self) -> np.ndarray:
        """Checkpoint index of each case's decision in the last call (-1: undecided)."""
        self._check_is_fitted()
        if self.state_info is None:
            raise EarlyInputError("no prediction yet: call predict or update_predict first")
        return self.state_info["stop"]


def _to_record(state: dict) -> np.ndarray:
    """The decider's state as one record per case (aeon keeps state_info as an array, a row per case)."""
    stop, probs = state["stop"], state["probs"]
    policy = {f"policy.{k}": np.asarray(v) for k, v in state["policy"].items()}
    fields = {"next": np.full(len(stop), state["next"]), "stop": stop, "probs": probs, **policy}
    record = np.zeros(len(stop), dtype=[(k, v.dtype, v.shape[1:]) for k, v in fields.items()])
    for k, v in fields.items():
        record[k] = v
    return record


def _from_record(record: np.ndarray) -> dict:
    names = record.dtype.names
    return {"next": int(record["next"].max(initial=0)), "stop": record["stop"].copy(),
            "probs": record["probs"].copy(),
            "policy": {k[len("policy."):]: record[k].copy() for k in names if k.startswith("policy.")}}


def _outputs(model, x: torch.Tensor) -> TeacherOutputs:
    with torch.no_grad():
        parts = [model(x[i:i + 256]) for i in range(0, len(x), 256)]
    return TeacherOutputs(*(torch.cat([getattr(p, f) for p in parts]) for f in ("logits", "feature", "hidden")))
