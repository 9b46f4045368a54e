"""Data path: load (bundled, archive, user files) -> validate -> resample -> split -> standardise."""
from .load import RawData, bundled_datasets, describe, load_raw
from .prepare import Prepared, prepare, standardise

__all__ = ["RawData", "Prepared", "bundled_datasets", "describe", "load_raw", "prepare", "standardise"]
