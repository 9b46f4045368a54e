"""Classifiers with one interface: pooled feature, hidden sequence and logits."""
from .base import ARCHITECTURES, Classifier, ModelOutput, build_model, eval_mode
from . import conv, lstm  # noqa: F401  (register the architectures)

__all__ = ["ARCHITECTURES", "Classifier", "ModelOutput", "build_model", "eval_mode"]
