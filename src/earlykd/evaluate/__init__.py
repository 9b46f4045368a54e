from .metrics import classification_metrics, expected_calibration_error, macro_auc_prc

__all__ = ["classification_metrics", "expected_calibration_error", "macro_auc_prc"]
