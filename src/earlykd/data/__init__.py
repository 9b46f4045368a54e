"""Data path: load (registered sources: user files, archive, bundled) -> validate -> split -> standardise; views cut per earliness."""
from .load import SOURCES, RawData, bundled_datasets, describe, load_raw, register_source
from ..prefix import standardise
from .prepare import Prepared, prepare

__all__ = ["SOURCES", "RawData", "Prepared", "bundled_datasets", "describe", "load_raw", "prepare", "register_source",
           "standardise"]
