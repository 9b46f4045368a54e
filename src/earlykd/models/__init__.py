"""Classifiers with one interface: pooled feature, hidden sequence and logits. Architectures are registered by
name (`register_arch`) from every module here, imported below, then from the plugins of entry-point group
earlykd.architectures."""
from ..plugins import GROUPS, fill_registry
from .base import ARCHITECTURES, Classifier, ModelOutput, build_model, eval_mode, register_arch
from .levelnorm import at_level, fit_level_stats, set_level, use_level_norm

fill_registry(__name__, __path__, GROUPS["architectures"], skip=("base", "levelnorm"))

__all__ = ["ARCHITECTURES", "Classifier", "ModelOutput", "at_level", "build_model", "eval_mode", "fit_level_stats",
           "register_arch", "set_level", "use_level_norm"]
