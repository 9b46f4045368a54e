"""The model interface and the architecture registry."""
from __future__ import annotations

from contextlib import contextmanager
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from ..errors import EarlykdError, lookup, register_in


@contextmanager
def eval_mode(model: nn.Module):
    """Run a block with `model` in eval mode, then restore its training flag (also on error)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class ModelOutput(NamedTuple):
    logits: torch.Tensor    # (batch, classes)
    feature: torch.Tensor   # (batch, feature_dim): the vector that feeds the linear head
    hidden: torch.Tensor    # (batch, steps, hidden_dim): the last hidden sequence


class Classifier(nn.Module):
    """Subclasses build `self.head` on a feature of width `feature_dim` and implement `encode`."""
    arch: ClassVar[str]
    defaults: ClassVar[dict]  # {"layers": ..., "hidden": ...}
    feature_dim: int
    hidden_dim: int

    def __init__(self, in_channels: int, n_classes: int, layers: int, hidden: int):
        super().__init__()
        self.in_channels, self.n_classes = in_channels, n_classes
        self.layers, self.width = layers, hidden

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (batch, channels, steps) -> (feature, hidden sequence)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> ModelOutput:
        feature, hidden = self.encode(x)
        return ModelOutput(self.head(feature), feature, hidden)

    def spec(self) -> dict:
        levels = getattr(self, "norm_levels", None)   # batch-norm statistics per checkpoint (models.levelnorm)
        return {"arch": self.arch, "in_channels": self.in_channels, "n_classes": self.n_classes,
                "layers": self.layers, "hidden": self.width, **({"norm_levels": levels} if levels else {})}


ARCHITECTURES: dict[str, type[Classifier]] = {}


def register_arch(cls: type[Classifier]) -> type[Classifier]:
    return register_in(ARCHITECTURES, cls.arch, cls, "architecture")


def build_model(arch: str, in_channels: int, n_classes: int, layers: int | None = None,
                hidden: int | None = None) -> Classifier:
    cls = lookup(ARCHITECTURES, arch, "architecture")
    layers = cls.defaults["layers"] if layers is None else layers
    hidden = cls.defaults["hidden"] if hidden is None else hidden
    for name, value in (("model.layers", layers), ("model.hidden", hidden)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise EarlykdError(f"{name} must be a positive integer, got {value!r}")
    return cls(in_channels, n_classes, layers, hidden)
