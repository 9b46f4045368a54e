"""Python API mirroring the CLI: load a dataset, train a teacher, distil, evaluate, predict.

Keyword options use the CLI's names (see OPTIONS); `config` takes YAML paths, `sets` takes
dotted 'key=value' strings, exactly like `--config` and `--set`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import runs
from . import threads as cpu_threads
from .config import check_teacher_prefix, conflicts, require, resolve
from .data import Prepared, load_raw, prepare
from .data.load import check_real, label_column_warning, read_array_file
from .errors import check

OPTIONS = {
    "data": "data.name", "test_path": "data.test_path", "archive": "data.archive", "length": "data.length",
    "val_fraction": "data.val_fraction", "label_column": "data.label_column",
    "earliness": "prefix.earliness", "mode": "prefix.mode", "channels": "prefix.channels",
    "arch": "model.arch", "layers": "model.layers", "hidden": "model.hidden",
    "method": "method.name", "options": "method.options",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr", "weight_decay": "train.weight_decay",
    "warmup": "train.warmup", "seed": "train.seed", "device": "train.device", "threads": "train.threads",
    "progress": "train.progress", "teacher": "teacher", "out": "out",
    "select": "train.select", "ensemble": "ensemble.size", "combine": "ensemble.combine",
}


def make_config(config: str | list | None = None, sets: list[str] = (), base: dict | None = None, **options) -> dict:
    """Resolve a full config: defaults <- `base` (a command's own defaults) <- YAML files <- keyword options <-
    dotted sets."""
    files = [config] if isinstance(config, (str, Path)) else list(config or [])
    sets = [sets] if isinstance(sets, str) else list(sets)   # one "key=value" string, or a list of them
    unknown = set(options) - set(OPTIONS)
    if unknown:
        from .errors import EarlykdError
        raise EarlykdError(f"unknown option(s) {sorted(unknown)} (known: {', '.join(OPTIONS)})")
    conflicts({OPTIONS[k]: (f"{k}=", v) for k, v in options.items()}, list(sets))
    return resolve(files, {OPTIONS[k]: v for k, v in options.items()}, list(sets), base)


def load_dataset(name: str, archive: str | None = None, length: int = 100, val_fraction: float = 0.2,
                 split_seed: int = 0, test_path: str | None = None) -> Prepared:
    from .config import check_seed
    cfg = make_config(data=name, archive=archive, length=length, val_fraction=val_fraction, test_path=test_path)
    check_seed(split_seed, "split_seed")
    return prepare(load_raw(cfg["data"]), length, val_fraction, split_seed)


def train_teacher(config_file=None, sets=(), resume: bool = False, **options) -> runs.Run:
    cfg = make_config(config_file, sets, **options)
    require(cfg, "teacher")
    check_teacher_prefix(cfg)
    cpu_threads.apply(cfg["train"]["threads"])
    return runs.train_teacher(cfg, resume=resume)


def distill(teacher: str | Path | runs.Run | None = None, config_file=None, sets=(), resume: bool = False,
            **options) -> runs.Run:
    """`teacher` may be left out when a config file names it."""
    if teacher is not None:
        options["teacher"] = str(teacher.path if isinstance(teacher, runs.Run) else teacher)
    cfg = make_config(config_file, sets, **options)
    require(cfg, "student")
    cpu_threads.apply(cfg["train"]["threads"])
    return runs.distill(cfg, resume=resume)


def _path(run) -> Path:
    return run.path if isinstance(run, runs.Run) else Path(run)


def evaluate(run: str | Path | runs.Run, test_path: str | Path | None = None, label_column="run",
             device: str = "auto", threads: int | None = None) -> dict:
    """Test metrics recomputed from the checkpoint, or metrics on labelled series from `test_path`."""
    cpu_threads.apply(threads)
    return runs.evaluate_run(_path(run), device, test_path=test_path, label_column=label_column)


def read_input(run: str | Path | runs.Run, path: str | Path, label_column="run",
               info: dict | None = None) -> tuple[list, str | None]:
    """Series from a .npy/.npz/.csv file, and for a CSV one line saying which columns were used. Its label column is
    dropped as in training: "run" takes the run's data.label_column, None means the file has none. `info`, when
    given, receives what was read (see read_array_file)."""
    if label_column == "run":
        label_column = runs.read_run(_path(run))[0]["data"].get("label_column", 0)
    info = {} if info is None else info
    series, _ = read_array_file(path, label_column, need_labels=False, info=info)
    if "label_column" not in info:  # .npy / .npz: nothing to choose
        return series, None
    label = "no label column" if info["label_column"] is None else \
        f"label column {info['label_column']} (0-based) ignored"
    return series, (f"{path}: {info['rows']} rows; {label}; {info['columns']} value columns; "
                    + ("header row skipped" if info["header"] else "no header"))


def predict_file(run, path, full: bool = False, label_column="run", device: str = "auto", threads=None,
                 policy: str | None = None):
    """-> (labels, probabilities, notes) for the series in a file; notes['read'] says what was read (an anytime
    run's notes['decisions'] say when each row was decided)."""
    info: dict = {}
    series, read = read_input(run, path, label_column, info)
    cpu_threads.apply(threads)
    labels, probs, notes = runs.predict(_path(run), series, full, str(path), device=device, policy=policy)
    if label_column == "run":   # the run's label column: does the file have one?
        reference = runs.read_run(_path(run))[1].get("data", {}).get("reference_length", 0)
        notes["warnings"] += label_column_warning(path, info, reference, notes["classes"])
    return labels, probs, {**notes, "read": read}


def predict(run: str | Path | runs.Run, series, full: bool = False, label_column="run", device: str = "auto",
            threads: int | None = None, policy: str | None = None) -> tuple[list[str], np.ndarray]:
    """`series`: an array (cases, length) or (cases, channels, length), a list of arrays, or a file path. An
    anytime run answers with its policy's decisions (`policy`: another calibrated one); "" for a row that
    reached no checkpoint; `decide` says which rows were decided and when."""
    if isinstance(series, (str, Path)):
        labels, probs, _ = predict_file(run, series, full, label_column, device, threads, policy)
        return labels, probs
    cpu_threads.apply(threads)
    labels, probs, _ = runs.predict(_path(run), _series_rows(series), full, "input", device=device, policy=policy)
    return labels, probs


def decide(run: str | Path | runs.Run, series, full: bool = False, label_column="run", device: str = "auto",
           threads: int | None = None, policy: str | None = None) -> list[dict]:
    """An anytime run's decision on each row of `series` (as for `predict`): label, decided (False: no stop yet,
    the label is the provisional answer of the last checkpoint reached, "" if none), checkpoint, samples, earliness
    and probabilities, as `earlykd predict` prints them. `full`: the rows are whole series (a shorter one has
    ended), as `evaluate` scores them."""
    if isinstance(series, (str, Path)):
        labels, probs, notes = predict_file(run, series, full, label_column, device, threads, policy)
    else:
        cpu_threads.apply(threads)
        labels, probs, notes = runs.predict(_path(run), _series_rows(series), full, "input", device=device,
                                            policy=policy)
    check("decisions" in notes, f"{_path(run)}: not an anytime run (`earlykd early`); use predict")
    return [{"label": label, **when, "decided": bool(when["decided"]), "probabilities": p}
            for label, when, p in zip(labels, notes["decisions"], probs)]


SHAPES = "pass an array (cases, length) or (cases, channels, length), a list of series, or a file path"


def _series_rows(series) -> list[np.ndarray]:
    """The rows of an in-memory `series`: each (channels, length) or (length,) of real numbers."""
    check(series is not None, f"series is None; {SHAPES}")
    if not isinstance(series, (list, tuple)):
        series = np.asarray(series)
        check_real(series.dtype, "series")
        check(series.ndim in (2, 3), f"series: a {series.ndim}-D array of shape {series.shape}; {SHAPES} "
                                     "(one series of length n is shape (1, n))")
        return list(series[:, None, :] if series.ndim == 2 else series)
    rows = []
    for i, row in enumerate(series):
        row = np.asarray(row)
        check_real(row.dtype, f"series: row {i + 1}")
        check(row.ndim in (1, 2), f"series: row {i + 1} has shape {row.shape}; each row is (length,) or (channels, length)")
        rows.append(row)
    return rows
