"""Stopping policies for an anytime student, one module each, registered by name on import; then the plugins of
entry-point group earlykd.policies."""
from ..plugins import GROUPS, fill_registry
from .base import (AUTO, POLICIES, Policy, best_on_validation, build_policy, calibrate_policies, decide, first_stops,
                   harmonic_mean, policy_class, policy_names, register)

fill_registry(__name__, __path__, GROUPS["policies"])

__all__ = ["AUTO", "POLICIES", "Policy", "best_on_validation", "build_policy", "calibrate_policies", "decide",
           "first_stops", "harmonic_mean", "policy_class", "policy_names", "register"]
