"""Classifiers with one interface: pooled feature, hidden sequence and logits."""
from .base import ARCHITECTURES, Classifier, ModelOutput, build_model, eval_mode
from . import conv, lstm  # noqa: F401  (register the architectures)
from .levelnorm import at_level, fit_level_stats, set_level, use_level_norm

__all__ = ["ARCHITECTURES", "Classifier", "ModelOutput", "at_level", "build_model", "eval_mode", "fit_level_stats",
           "set_level", "use_level_norm"]
