"""Distillation methods, one module (or sub-package) each, registered by name on import."""
import importlib
import pkgutil

from .base import METHODS, Batch, Distiller, TeacherDims, TeacherOutputs, build_method, method_class, register

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "Batch", "Distiller", "TeacherDims", "TeacherOutputs", "build_method", "method_class", "register"]
