"""Data path: load (registered sources: user files, archive, bundled, then the plugins of entry-point group
earlykd.data_sources) -> validate -> split -> standardise; views cut per earliness."""
from ..plugins import GROUPS, load_plugins
from .load import SOURCES, RawData, bundled_datasets, describe, load_raw, register_source
from ..prefix import standardise
from .prepare import Prepared, prepare

load_plugins(GROUPS["data_sources"])

__all__ = ["SOURCES", "RawData", "Prepared", "bundled_datasets", "describe", "load_raw", "prepare", "register_source",
           "standardise"]
