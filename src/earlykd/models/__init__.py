"""Classifiers with one interface: pooled feature, hidden sequence and logits. Architectures are registered by
name (`register_arch`) from every module here, imported below."""
import importlib
import pkgutil

from .base import ARCHITECTURES, Classifier, ModelOutput, build_model, eval_mode, register_arch
from .levelnorm import at_level, fit_level_stats, set_level, use_level_norm

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "levelnorm"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ARCHITECTURES", "Classifier", "ModelOutput", "at_level", "build_model", "eval_mode", "fit_level_stats",
           "register_arch", "set_level", "use_level_norm"]
