"""Distillation methods, one module (or sub-package) each, registered by name on import; then the plugins of
entry-point group earlykd.methods."""
from ..plugins import GROUPS, fill_registry
from .base import METHODS, Batch, Distiller, TeacherDims, TeacherOutputs, build_method, method_class, register

fill_registry(__name__, __path__, GROUPS["methods"])

__all__ = ["METHODS", "Batch", "Distiller", "TeacherDims", "TeacherOutputs", "build_method", "method_class", "register"]
