"""earlykd: full-to-partial knowledge distillation for early time-series classification."""
__version__ = "0.1.0"


def __getattr__(name: str):
    """`earlykd.EarlyClassifier`, imported on first use (torch and aeon stay out of `import earlykd`)."""
    if name == "EarlyClassifier":
        from .early.estimator import EarlyClassifier
        return EarlyClassifier
    raise AttributeError(f"module 'earlykd' has no attribute {name!r}")
