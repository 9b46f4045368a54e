"""Load raw series and string labels from aeon's bundled data, a UCR/UEA archive or user files."""
from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass
from typing import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import EarlykdError, check, did_you_mean, is_int, is_label_column

SUFFIXES = (".ts", ".tsv", ".arff")         # of an archive's dataset files
FILE_SUFFIXES = (".csv", ".npy", ".npz")    # of a data file passed by path
FILE_TYPES = ("use .csv, .npy or .npz; a UCR/UEA archive's .ts, .tsv or .arff files are read by dataset name "
              "with --archive PATH")


@dataclass
class RawData:
    """Series as a list of (channels, length) float arrays; labels as strings."""
    name: str
    X_train: list[np.ndarray]
    y_train: np.ndarray
    X_test: list[np.ndarray]
    y_test: np.ndarray
    source: str
    where: tuple[str, str] = ("", "")  # how errors name the train and test files

    def __post_init__(self):
        if self.where == ("", ""):
            self.where = (f"{self.name} train", f"{self.name} test")


def aeon_data_dir() -> Path:
    import aeon.datasets
    return Path(os.path.dirname(aeon.datasets.__file__)) / "data"


def _is_classification_ts(path: Path) -> bool:
    with open(path, errors="replace") as fh:
        for line in fh:
            low = line.strip().lower()
            if low.startswith("@classlabel"):
                return low.split()[1:2] == ["true"]
            if low.startswith("@data"):
                return False
    return False


@lru_cache(maxsize=1)
def bundled_datasets() -> tuple[str, ...]:
    """Classification datasets shipped inside the aeon wheel (found offline)."""
    root = aeon_data_dir()
    names = []
    for folder in sorted(root.iterdir()):
        train = folder / f"{folder.name}_TRAIN.ts"
        if train.is_file() and (folder / f"{folder.name}_TEST.ts").is_file() and _is_classification_ts(train):
            names.append(folder.name)
    return tuple(names)


def _as_series_list(X) -> list[np.ndarray]:
    if isinstance(X, np.ndarray):
        X = X if X.ndim == 3 else X[:, None, :]
        return [np.asarray(x, dtype=np.float64) for x in X]
    return [np.atleast_2d(np.asarray(x, dtype=np.float64)) for x in X]


def check_real(dtype: np.dtype, what: str) -> None:
    """Series must be real numbers: complex, bool, text and object arrays are refused in one line."""
    check(dtype.kind != "c", f"{what} is complex (dtype {dtype}); pass real values")
    check(dtype.kind in "iuf", f"{what} is not numeric (dtype {dtype})")


def _archive_series(X, y, path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """What aeon parsed from `path` as series and labels; a file that yields no series or a non-numeric
    value is named with its row."""
    check(len(X) > 0 and (not isinstance(X, np.ndarray) or X.ndim in (2, 3)),
          f"{path}: no series found (not a valid {path.suffix} file?)")
    check(len(y) == len(X), f"{path}: {len(X)} series but {len(y)} labels")
    for r, x in enumerate(X):
        try:
            np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            bad = next((v for v in np.ravel(np.asarray(x, dtype=object)) if _not_number(str(v))), x)
            raise EarlykdError(f"{path}: row {r + 1}: non-numeric value '{str(bad)[:20]}'") from None
    return _as_series_list(X), np.asarray(y).astype(str)


def _load_archive_split(folder: Path, name: str, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    from aeon.datasets import load_from_arff_file, load_from_ts_file, load_from_tsv_file
    loaders = {".ts": load_from_ts_file, ".tsv": load_from_tsv_file, ".arff": load_from_arff_file}
    for suffix in SUFFIXES:
        path = folder / f"{name}_{split}{suffix}"
        if path.is_file():
            try:
                X, y = loaders[suffix](str(path))
            except Exception as exc:  # aeon raises many types for malformed files
                raise EarlykdError(f"{path}: cannot parse: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
            return _archive_series(X, y, path)
    raise EarlykdError(f"{folder}: no {name}_{split}.ts, .tsv or .arff file")


def _load_bundled(name: str) -> RawData:
    from aeon.datasets import load_classification
    base = str(aeon_data_dir())
    X, y = load_classification(name, split="train", extract_path=base)
    Xt, yt = load_classification(name, split="test", extract_path=base)
    return RawData(name, _as_series_list(X), np.asarray(y).astype(str), _as_series_list(Xt),
                   np.asarray(yt).astype(str), f"aeon:{name}")


def _load_archive(name: str, root: str) -> RawData:
    folder = Path(root) / name
    check(Path(root).is_dir(), f"archive folder not found: {root}")
    check(folder.is_dir(), f"dataset '{name}' not found in archive {root} (expected folder {folder})")
    X, y = _load_archive_split(folder, name, "TRAIN")
    Xt, yt = _load_archive_split(folder, name, "TEST")
    return RawData(name, X, y, Xt, yt, f"archive:{folder}", (f"{folder} {name}_TRAIN", f"{folder} {name}_TEST"))


def _utf8_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise EarlykdError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                           "save the file as UTF-8") from None


def _read_csv(path: Path, label_column, info: dict | None = None) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Rows are univariate series, possibly of different lengths (a shorter row ends in NaN); one column holds
    the label (None for unlabelled input). Messages count columns from 0, as `--label-column` does.
    `info`, when given, receives what was read: header (bool), label column (0-based or None), columns, rows and
    labels (the label column's values, or None)."""
    import csv
    import io

    import pandas as pd
    check(is_label_column(label_column),
          f"{path}: the label column must be an index from 0, a header name or none, got {label_column!r}")
    label_column = int(label_column) if is_int(label_column) else label_column
    text = _utf8_text(path)
    try:  # the widest row, so that rows of any length and order are read (pandas counts the first row's fields)
        width = max((len(row) for row in csv.reader(io.StringIO(text))), default=0)
        frame = pd.read_csv(io.StringIO(text), header=None, names=range(max(width, 1)), index_col=False, dtype=str,
                            keep_default_na=False, skip_blank_lines=True).fillna("")
    except pd.errors.EmptyDataError:
        raise EarlykdError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, csv.Error) as exc:
        raise EarlykdError(f"{path}: cannot parse CSV: {str(exc).strip().splitlines()[-1]}") from None
    check(len(frame) > 0, f"{path}: file is empty")
    if width == 1:
        for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            check(sep not in frame.iloc[0, 0], f"{path}: each row is a single field with {name} in it; earlykd "
                                               f"reads comma-separated values (replace the {name} by commas)")
    header = None
    first = [c.strip() for c in frame.iloc[0].tolist()]
    check(not isinstance(label_column, int) or label_column >= 0,
          f"{path}: label column {label_column} is negative; give its index from 0 (the first column) or its header name")
    if label_column is not None and not isinstance(label_column, int):
        header = first
        check(str(label_column) in header, f"{path}: no column named '{label_column}' in the header")
        label_idx = header.index(str(label_column))
        frame = frame.iloc[1:]
    else:
        label_idx = label_column
        values = [c for i, c in enumerate(first) if i != label_idx]
        if values and all(_not_number(c) for c in values if c != ""):
            header, frame = first, frame.iloc[1:]
    check(len(frame) > 0, f"{path}: file has a header but no rows")
    if label_idx is not None:
        check(label_idx < frame.shape[1],
              f"{path}: label column {label_idx} (0-based) is out of range ({frame.shape[1]} columns)")
        labels = frame.iloc[:, label_idx].str.strip().to_numpy().astype(str)
        frame = frame.drop(columns=frame.columns[label_idx])
    else:
        labels = None
    if info is not None:
        info.update(header=header is not None, label_column=label_idx, columns=frame.shape[1], rows=len(frame),
                    labels=labels)
    series = []
    for r, row in enumerate(frame.itertuples(index=False)):
        vals = []
        for column, cell in zip(frame.columns, row):
            cell = cell.strip()
            if cell == "" or cell.lower() in ("nan", "na", "?"):
                vals.append(np.nan)
                continue
            try:
                vals.append(float(cell))
            except ValueError:
                raise EarlykdError(f"{path}: row {r + 1}, column {column} (0-based): non-numeric value '{cell[:20]}'"
                                   + _label_hint(frame[column], column)) from None
        series.append(np.asarray(vals, dtype=np.float64)[None, :])
    return series, labels


def _label_hint(cells, column: int) -> str:
    """A column of text in every row is likely the label column."""
    cells = [c.strip() for c in cells if c.strip() != ""]
    if all(_not_number(c) for c in cells):
        return (f"; is the label in column {column}? say so with --label-column {column} "
                f"(when training: --set data.label_column={column})")
    return ""


def label_column_warning(path, info: dict, reference_length: int, classes) -> list[str]:
    """A warning when the CSV column dropped as a run's label column looks like series data rather than labels:
    with it the rows hold a whole series (T values), or, in a file without a header, it holds numbers; never when
    every value in it is one of the run's classes. `info`: as `read_array_file` filled it."""
    labels = info.get("labels")
    if labels is None or set(labels.tolist()) <= set(map(str, classes)):
        return []
    whole = info["columns"] + 1 == reference_length
    values = [v for v in labels if v != ""]
    if not whole and (info["header"] or not values or any(_not_number(v) for v in values)):
        return []
    why = f"with it the rows hold {reference_length} values, a whole series" if whole else \
        "it holds numbers, not the run's classes"
    return [f"{path}: column {info['label_column']} (0-based) was dropped as the run's label column, but {why}; "
            "if the file has no labels, pass --label-column none"]


def _not_number(text: str) -> bool:
    try:
        float(text)
        return False
    except ValueError:
        return True


def _check_labels(labels: np.ndarray, path: Path, field: str) -> None:
    empty = np.flatnonzero(np.char.strip(labels) == "")
    if len(empty):
        raise EarlykdError(f"{path}: row {empty[0] + 1}, {field}: empty label")


def _read_numpy(path: Path, suffix: str, need_labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(X, y or None) of a .npy or .npz file; a damaged file or one that is no numeric NumPy data is named
    in one line (it is never unpickled)."""
    field = "array" if suffix == ".npy" else "field 'X'"
    try:
        loaded = np.load(path, allow_pickle=False)
        if suffix == ".npy":
            check(isinstance(loaded, np.ndarray), f"{path}: is a .npz archive, not a .npy array; rename it to .npz")
            return loaded, None
        check(not isinstance(loaded, np.ndarray), f"{path}: is a .npy array, not a .npz archive; rename it to .npy")
        check("X" in loaded.files, f"{path}: .npz needs an array 'X' (found {', '.join(loaded.files) or 'none'})")
        X = loaded["X"]
        field = "field 'y'"
        return X, (loaded["y"] if need_labels and "y" in loaded.files else None)
    except zipfile.BadZipFile:
        raise EarlykdError(f"{path}: not a valid .npz (zip) file; is it truncated or damaged?") from None
    except (ValueError, OSError, EOFError, zlib.error) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Object arrays" in text:
            hint = "" if field == "field 'y'" else "; series of unequal lengths: pad them with NaN to one length"
            raise EarlykdError(f"{path}: {field} is not numeric (dtype object){hint}") from None
        if "pickle" in text:
            made = "numpy.savez, with an array X" if suffix == ".npz" else "numpy.save"
            raise EarlykdError(f"{path}: not a numeric NumPy array (no {suffix} header; write it with {made})") from None
        raise EarlykdError(f"{path}: cannot read NumPy file ({text})") from None


def read_array_file(path: str | Path, label_column=0, need_labels: bool = True, info: dict | None = None):
    """Series (and labels) from .npy, .npz (keys X, y) or .csv. Without `need_labels`, a CSV still
    drops its label column (None: the file has none), as in training."""
    path = Path(path)
    check(path.exists(), f"file not found: {path}")
    check(path.is_file(), f"not a file: {path}")
    check(path.stat().st_size > 0, f"{path}: file is empty")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        info = {} if info is None else info
        series, labels = _read_csv(path, label_column, info)
        check(labels is not None or not need_labels, f"{path}: no labels (a CSV for this needs a label column)")
        if need_labels:
            _check_labels(labels, path, f"column {info['label_column']} (0-based)")
        return series, labels
    check(suffix in FILE_SUFFIXES, f"{path}: unsupported file type '{suffix}' ({FILE_TYPES})")
    X, labels = _read_numpy(path, suffix, need_labels)
    check(X.size > 0, f"{path}: array is empty")
    check_real(X.dtype, f"{path}: " + ("array" if suffix == ".npy" else "field 'X'"))
    check(X.ndim in (2, 3), f"{path}: 'X' must be (cases, length) or (cases, channels, length), got shape {X.shape}")
    if need_labels:
        check(labels is not None, f"{path}: no labels (store an array 'y' in a .npz, or use a CSV with a label column)")
        check(labels.ndim == 1, f"{path}: field 'y' must hold one label per series, got shape {labels.shape}")
        check(len(labels) == len(X), f"{path}: {len(X)} series but {len(labels)} labels")
        labels = np.asarray(labels).astype(str)
        _check_labels(labels, path, "field 'y'")
    return _as_series_list(X), labels


def _load_files(train: str, test: str | None, label_column) -> RawData:
    check(test is not None, f"data.test_path is needed with a data file ({train}): the test split is never taken from train")
    X, y = read_array_file(train, label_column)
    Xt, yt = read_array_file(test, label_column)
    return RawData(Path(train).stem, X, y, Xt, yt, f"files:{train},{test}", (str(train), str(test)))


def is_file_source(name: str) -> bool:
    return Path(name).suffix.lower() in FILE_SUFFIXES or os.sep in name


@dataclass(frozen=True)
class Source:
    """Where series come from: `claims(data_cfg)` says whether this source reads the config's data,
    `load(data_cfg)` reads it."""
    name: str
    claims: Callable[[dict], bool]
    load: Callable[[dict], RawData]


SOURCES: list[Source] = []   # asked in order; the first that claims a config loads it


def register_source(name: str, claims: Callable[[dict], bool], first: bool = False):
    """Decorator: register `load(data_cfg) -> RawData` as a data source, asked before the bundled datasets (which
    claim any name and come last); `first`: before every other source too."""
    def add(load: Callable[[dict], RawData]) -> Callable[[dict], RawData]:
        check(name not in {s.name for s in SOURCES}, f"a data source named '{name}' is already registered")
        SOURCES.insert(0 if first else sum(s.name != "bundled" for s in SOURCES), Source(name, claims, load))
        return load
    return add


@register_source("files", lambda cfg: is_file_source(str(cfg["name"])))
def _files_source(cfg: dict) -> RawData:
    return _load_files(str(cfg["name"]), cfg.get("test_path"), cfg.get("label_column", 0))


@register_source("archive", lambda cfg: bool(cfg.get("archive")))
def _archive_source(cfg: dict) -> RawData:
    return _load_archive(str(cfg["name"]), cfg["archive"])


@register_source("bundled", lambda cfg: True)
def _bundled_source(cfg: dict) -> RawData:
    name = str(cfg["name"])
    suffix = Path(name).suffix
    check(name in bundled_datasets() or not suffix, f"{name}: unsupported file type '{suffix}' ({FILE_TYPES})")
    if name not in bundled_datasets():
        hint = did_you_mean(name, bundled_datasets(), f"bundled: {', '.join(bundled_datasets())}; or pass --archive PATH")
        raise EarlykdError(f"unknown dataset '{name}' ({hint})")
    return _load_bundled(name)


def load_raw(data_cfg: dict) -> RawData:
    """The series of a data config, from the first registered source that claims it."""
    return next(s for s in SOURCES if s.claims(data_cfg)).load(data_cfg)


def describe(raw: RawData) -> dict:
    lengths = [x.shape[-1] for x in raw.X_train + raw.X_test]
    return {
        "name": raw.name,
        "train": len(raw.X_train),
        "test": len(raw.X_test),
        "channels": raw.X_train[0].shape[0],
        "length": f"{min(lengths)}" if min(lengths) == max(lengths) else f"{min(lengths)}-{max(lengths)}",
        "classes": len(set(raw.y_train)),
    }
