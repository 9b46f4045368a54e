"""Number of epochs by stratified k-fold cross-validation on the training split.

Each fold trains for the full budget and records validation accuracy and loss per epoch; the
curves are averaged over folds and the chosen epoch is the one of best mean accuracy (ties: lower
mean loss), never before `min_epochs`. The caller then refits on the whole training split for
that many epochs. Each case's logits from the fold that held it out, at the chosen epoch, come back
too (`oof`: out-of-fold predictions, e.g. DLF's design points). Nothing here sees the test split.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from .loop import Split, Trainer, predict_logits


@dataclass
class CVResult:
    epochs: int                 # epochs to refit for (chosen epoch + 1)
    folds: int
    mean_acc: list[float]       # per epoch, averaged over folds
    mean_loss: list[float]
    oof: np.ndarray | None = None   # (cases, classes) held-out logits at the chosen epoch

    @property
    def score(self) -> tuple[float, float]:
        """(accuracy, loss) at the chosen epoch: the cross-validated estimate."""
        return self.mean_acc[self.epochs - 1], self.mean_loss[self.epochs - 1]


def n_folds(y: np.ndarray, wanted: int = 5) -> int:
    """k for stratified k-fold: at most `wanted`, at most the smallest class's count."""
    return int(min(wanted, np.bincount(y).min()))


def choose_epoch(mean_acc: np.ndarray, mean_loss: np.ndarray, min_epochs: int = 0) -> int:
    """Index of the best mean accuracy at or after `min_epochs`, ties broken by lower mean loss."""
    first = min(min_epochs, len(mean_acc) - 1)
    order = sorted(range(first, len(mean_acc)), key=lambda e: (-mean_acc[e], mean_loss[e], e))
    return order[0]


def cross_validate_epochs(build: Callable[[], torch.nn.Module], x: torch.Tensor, y: torch.Tensor, cfg: dict,
                          device: torch.device, folds: int = 5, min_epochs: int = 0) -> CVResult | None:
    """CV over (x, y); `build()` returns a fresh distiller (a teacher: method base). None when a class
    is too small for two folds."""
    k = n_folds(y.numpy(), folds)
    if k < 2:
        return None
    split = StratifiedKFold(n_splits=k, shuffle=True, random_state=cfg["seed"])
    fold_cfg = {**cfg, "patience": None, "checkpoint_every": 0, "min_epochs": 0}
    accs, losses, held = [], [], []
    for fold, (fit, val) in enumerate(split.split(np.zeros(len(y)), y.numpy())):
        torch.manual_seed(cfg["seed"] + fold)
        trainer = Trainer(build(), fold_cfg, device, desc=f"fold {fold + 1}/{k}")
        fit_t, val_t = torch.from_numpy(fit), torch.from_numpy(val)
        recorder = RecordingSplit(x[val_t], y[val_t])
        history = trainer.fit(Split(x[fit_t], y[fit_t]), recorder).history
        accs.append([row["val_acc"] for row in history])
        losses.append([row["val_loss"] for row in history])
        held.append((val, recorder.logits))
    mean_acc, mean_loss = np.mean(accs, axis=0), np.mean(losses, axis=0)
    best = choose_epoch(mean_acc, mean_loss, min_epochs)
    oof = np.zeros((len(y), held[0][1][0].shape[1]), dtype=np.float32)
    for val, logits in held:
        oof[val] = logits[best]
    return CVResult(best + 1, k, mean_acc.round(6).tolist(), mean_loss.round(6).tolist(), oof)


class RecordingSplit(Split):
    """A validation split that keeps the logits of every scoring (one per epoch), scored as Split scores."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        super().__init__(x, y)
        self.logits: list[np.ndarray] = []

    def to(self, device) -> "RecordingSplit":
        moved = RecordingSplit(self.x.to(device), self.y.to(device))
        moved.logits = self.logits
        return moved

    def score(self, model) -> tuple[float, float]:
        logits = predict_logits(model, self.x)
        self.logits.append(logits.cpu().numpy())
        return self.score_logits(logits)
