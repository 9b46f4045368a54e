"""Data path: load (bundled, archive, user files) -> validate -> split -> standardise; views cut per earliness."""
from .load import RawData, bundled_datasets, describe, load_raw
from ..prefix import standardise
from .prepare import Prepared, prepare

__all__ = ["RawData", "Prepared", "bundled_datasets", "describe", "load_raw", "prepare", "standardise"]
