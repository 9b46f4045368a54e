from .checkpoint import load_model, save_model
from .loop import FitResult, Split, Trainer, batch_slices, predict_logits

__all__ = ["FitResult", "Split", "Trainer", "batch_slices", "load_model", "predict_logits", "save_model"]
