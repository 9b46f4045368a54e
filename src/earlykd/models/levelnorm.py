"""Batch-norm statistics per checkpoint, for the anytime student.

The anytime student trains on one earliness level per mini-batch, so in training every batch norm
normalises with the statistics of one level. One running average mixes all levels and, in eval mode,
matches none of them: a 5 % prefix and the whole series give different activation statistics.
`use_level_norm` gives each BatchNorm1d one row of running statistics per checkpoint (the affine
weights stay shared). `set_level` picks the row that training updates and evaluation reads, and
`fit_level_stats` recomputes every row from the training views once the weights are chosen. Rows that
training updates only on their own level's batches go stale between updates, so selection during training
scores each level with the batch statistics of its own validation prefixes (`batch_statistics`). A model
without batch norm (an LSTM) is left as it is.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class LevelBatchNorm(nn.Module):
    """BatchNorm1d with running mean and variance of shape (levels, channels); `level` picks the row
    (an int, or a 0-dim integer tensor inside an exported graph)."""

    def __init__(self, num_features: int, levels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum, self.level = eps, momentum, 0
        self.batch_stats = False   # eval mode with the input's own statistics, updating nothing
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(levels, num_features))
        self.register_buffer("running_var", torch.ones(levels, num_features))

    @classmethod
    def of(cls, bn: nn.BatchNorm1d, levels: int) -> "LevelBatchNorm":
        out = cls(bn.num_features, levels, bn.eps, bn.momentum if bn.momentum is not None else 0.1)
        with torch.no_grad():
            out.weight.copy_(bn.weight)
            out.bias.copy_(bn.bias)
            out.running_mean.copy_(bn.running_mean.expand_as(out.running_mean))
            out.running_var.copy_(bn.running_var.expand_as(out.running_var))
        return out.to(bn.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_stats and not self.training:
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        if self.training:   # batch statistics; the level's row (a view) is updated in place
            k = int(self.level)
            return F.batch_norm(x, self.running_mean[k], self.running_var[k], self.weight, self.bias, True,
                                self.momentum, self.eps)
        return F.batch_norm(x, self.running_mean[self.level], self.running_var[self.level], self.weight,
                            self.bias, False, 0.0, self.eps)


def use_level_norm(model: nn.Module, levels: int) -> nn.Module:
    """Replace every BatchNorm1d of `model` (in place) by a LevelBatchNorm with `levels` rows, each a copy
    of its running statistics; `model.norm_levels` records the count for the checkpoint."""
    def swap(parent: nn.Module) -> int:
        found = 0
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm1d):
                setattr(parent, name, LevelBatchNorm.of(child, levels))
                found += 1
            else:
                found += swap(child)
        return found
    if swap(model):
        model.norm_levels = levels
    return model


def level_norms(model: nn.Module) -> list[LevelBatchNorm]:
    return [m for m in model.modules() if isinstance(m, LevelBatchNorm)]


def set_level(model: nn.Module, level) -> None:
    """Make every LevelBatchNorm of `model` use checkpoint `level` (no-op for a model without them)."""
    for m in level_norms(model):
        m.level = level


@contextmanager
def at_level(model: nn.Module, level):
    """Run a block with `model`'s batch norms at checkpoint `level`, then restore the level they had."""
    norms = level_norms(model)
    before = [m.level for m in norms]
    set_level(model, level)
    try:
        yield model
    finally:
        for m, k in zip(norms, before):
            m.level = k


@contextmanager
def batch_statistics(model: nn.Module):
    """Run a block with `model`'s level norms normalising, in eval mode, by the statistics of their input."""
    norms = level_norms(model)
    for m in norms:
        m.batch_stats = True
    try:
        yield model
    finally:
        for m in norms:
            m.batch_stats = False


@torch.no_grad()
def fit_level_stats(model: nn.Module, views: list[torch.Tensor], chunk: int = 512) -> None:
    """Each level's statistics from `views[level]` (the training split at that level) with the present
    weights: the average over chunks of their batch statistics, exact when the split is one chunk (beyond
    it, deeper norms see inputs normalised by chunk statistics, the usual approximation)."""
    norms = level_norms(model)
    if not norms:
        return
    was_training = model.training
    model.train()
    momenta = [m.momentum for m in norms]
    try:
        for k, x in enumerate(views):
            set_level(model, k)
            for i, start in enumerate(range(0, len(x), chunk)):
                for m in norms:
                    m.momentum = 1.0 / (i + 1)   # running average over the chunks
                model(x[start:start + chunk])
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
