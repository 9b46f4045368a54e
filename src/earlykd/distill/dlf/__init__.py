"""dlf: Gaussian distillation of an ensemble's uncertainty (see method.py and docs/dlf.md)."""
from .gaussian import Posterior, e_step, neg_joint, neg_q, predictive_stats
from .method import DLF, DLFHeads, DLFStudent, Predictive, load, predictive

__all__ = ["DLF", "DLFHeads", "DLFStudent", "Posterior", "Predictive", "e_step", "load", "neg_joint", "neg_q",
           "predictive", "predictive_stats"]
