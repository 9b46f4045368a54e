"""Stopping policies for an anytime student, one module each, registered by name on import."""
import importlib
import pkgutil

from .base import POLICIES, Policy, build_policy, decide, first_stops, harmonic_mean, policy_class, register

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["POLICIES", "Policy", "build_policy", "decide", "first_stops", "harmonic_mean", "policy_class", "register"]
