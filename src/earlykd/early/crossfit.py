"""Cross-fitted calibration (`early.crossfit = K`): stopping policies calibrated on out-of-fold predictions.

The training and validation splits are pooled. K anytime students, each trained on K - 1 stratified folds for
the whole epoch budget, predict the fold they did not see; their logits at every checkpoint, one out-of-fold
prediction per pooled series, calibrate the policies and give the score that compares variants. The deployed
student is then trained on the whole pool for the same budget. Nothing is held out to choose a checkpoint, so
every student keeps its weights averaged over the last quarter of the epochs (`AveragingTrainer`).

On small datasets the validation split is tiny (GunPoint: 10 series, ArrowHead: 8), and a checkpoint,
temperatures and thresholds all chosen on it are optimistic; here every training series is scored once, by a
model that did not see it, and the deployed student learns from all of them (as the peers' estimators do).
Measured on the quick datasets it did not pay (docs/early.md).

Policies see logits only: the fold students' features live in different spaces, so DLF's mutual information
gives way to the entropy of the student's probabilities and the ELECTS head reads logits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from ..data import Prepared
from ..distill import TeacherOutputs
from ..errors import check
from ..models import fit_level_stats
from ..train import Trainer
from ..train.checkpoint import atomic_write
from ..train.cv import n_folds
from .anytime import LevelSplit, new_distiller

FIELDS = ("logits", "feature", "hidden", "members")


def pooled_split(data: Prepared, levels: list[float], mode: str, channels, outputs: dict | None) -> LevelSplit:
    """The training and validation series as one split, at every level, with their teacher outputs."""
    parts = [LevelSplit.of(data, s, levels, mode, channels, outputs[s] if outputs else None) for s in ("train", "val")]
    views = [torch.cat([p.views[k] for p in parts]) for k in range(len(levels))]
    teacher = None
    if outputs:
        oof = [p.teacher.member_oof for p in parts]
        teacher = TeacherOutputs(*(torch.cat([getattr(p.teacher, f) for p in parts]) for f in FIELDS),
                                 None if any(o is None for o in oof) else torch.cat(oof))
    return LevelSplit(views, torch.cat([p.y for p in parts]), teacher, np.concatenate([p.ready for p in parts]))


class AveragingTrainer(Trainer):
    """Keeps the running mean of the weights over the last quarter of the epochs (stochastic weight averaging) as
    the state it ends with: with nothing held out to choose a checkpoint, the latest epoch of this noisy training
    (one level per batch) is a lottery, and the average is not. The mean covers what the method's
    `selection_state` names (the student alone where the method's own modules serve training only), lives in
    `best_state`, so a resumed run continues it; the caller refits the norm statistics for the averaged weights."""

    def _select(self, row: dict, train_loss: float) -> None:
        start = averaging_start(self.cfg["epochs"])
        if self.epoch < start:
            return
        n = self.epoch - start + 1
        live = self.model.selection_state()
        if self.best_state is None or n == 1:
            self.best_state = {k: v.detach().clone() for k, v in live.items()}
        else:
            for k, v in live.items():
                mean = self.best_state[k]
                if mean.is_floating_point():
                    mean.add_(v.detach() - mean, alpha=1.0 / n)
                else:
                    mean.copy_(v)
        self.best_epoch = self.epoch


def averaging_start(epochs: int) -> int:
    """The first epoch whose weights join the average: the last quarter of the budget."""
    return epochs - max(1, epochs // 4)


def fit_on(split: LevelSplit, n_classes: int, method: str, options: dict, model_cfg: dict, train_cfg: dict,
           device, level_norm: bool, state_path=None, resume: bool = False, desc: str = ""):
    """(distiller, FitResult): a student trained on `split` for the whole budget, its weights averaged over the
    last quarter of the epochs, its norm rows refitted."""
    torch.manual_seed(train_cfg["seed"])
    distiller = new_distiller(split, n_classes, method, options, model_cfg, train_cfg, level_norm)
    trainer = AveragingTrainer(distiller, {**train_cfg, "patience": None}, device, state_path, desc=desc)
    if resume and state_path is not None and state_path.exists():
        trainer.load_state(state_path)
    fit = trainer.fit(split, split.subset(np.arange(0)))
    fit_level_stats(distiller.student, [v.to(device) for v in split.views])
    return distiller, fit


def crossfit_anytime(data: Prepared, outputs: dict | None, method: str, options: dict, model_cfg: dict,
                     train_cfg: dict, levels: list[float], mode: str, channels, device, folds: int,
                     level_norm: bool = True, state_path: Path | None = None, resume: bool = False, desc: str = ""):
    """-> (distiller trained on the pool, its FitResult, out-of-fold logits (levels, cases, classes), the pooled
    labels, the pooled cases' first decidable levels (`LevelSplit.ready`), the number of folds). Each fold's logits are kept beside `state_path` (the pooled fit's resume
    state), so that a resumed run skips finished folds."""
    pool = pooled_split(data, levels, mode, channels, outputs)
    y = pool.y.numpy()
    k = n_folds(y, folds)
    check(k >= 2, f"early.crossfit needs at least 2 series of every class in the training and validation splits; "
                  f"class {data.classes[int(np.bincount(y).argmin())]!r} has {int(np.bincount(y).min())}")
    oof = np.zeros((len(levels), len(y), data.n_classes), dtype=np.float32)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=train_cfg["seed"])
    for fold, (seen, held) in enumerate(splitter.split(np.zeros(len(y)), y)):
        kept = None if state_path is None else fold_file(state_path, fold)
        if kept is not None and resume and kept.is_file():
            oof[:, held] = load_fold(kept, oof[:, held].shape)
            continue
        distiller = fit_on(pool.subset(seen), data.n_classes, method, options, model_cfg, train_cfg, device,
                           level_norm, desc=f"{desc} fold {fold + 1}/{k}")[0]
        oof[:, held] = pool.subset(held).logits(distiller.student.eval())
        if kept is not None:   # whole or not at all: a resumed run trusts the file
            atomic_write(kept, lambda tmp: _save(tmp, oof[:, held]))
    distiller, fit = fit_on(pool, data.n_classes, method, options, model_cfg, train_cfg, device, level_norm,
                            state_path, resume, desc)
    return distiller, fit, oof, y, pool.ready, k


def fold_file(state_path: Path, fold: int) -> Path:
    return state_path.with_name(f"crossfit-fold{fold}.npy")


def _save(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as fh:   # a file object: np.save would add .npy to the temporary name
        np.save(fh, array)


def load_fold(path: Path, shape: tuple) -> np.ndarray:
    """A finished fold's out-of-fold logits (levels, held-out cases, classes), or one line naming the file."""
    try:
        logits = np.load(path, allow_pickle=False)
        problem = None if isinstance(logits, np.ndarray) else "not a single array"
    except (OSError, ValueError, EOFError) as exc:
        logits, problem = None, f"unreadable: {' '.join(str(exc).split())[:80]}"
    if problem is None and (logits.dtype != np.float32 or logits.shape != shape):
        problem = f"{logits.dtype} array of shape {logits.shape}, expected float32 {shape}"
    check(problem is None, f"{path}: a finished fold's logits are damaged ({problem}); run it afresh without --resume")
    return logits
