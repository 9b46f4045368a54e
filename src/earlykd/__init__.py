"""earlykd: full-to-partial knowledge distillation for early time-series classification."""
__version__ = "0.1.0"
