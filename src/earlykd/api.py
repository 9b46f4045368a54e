"""Python API mirroring the CLI: load a dataset, train a teacher, distil, evaluate, predict.

Keyword options use the CLI's names (see OPTIONS); `config` takes YAML paths, `sets` takes
dotted 'key=value' strings, exactly like `--config` and `--set`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import runs
from .config import resolve
from .data import Prepared, load_raw, prepare
from .data.load import read_array_file

OPTIONS = {
    "data": "data.name", "test_path": "data.test_path", "archive": "data.archive", "length": "data.length",
    "val_fraction": "data.val_fraction", "label_column": "data.label_column",
    "earliness": "prefix.earliness", "mode": "prefix.mode", "channels": "prefix.channels",
    "arch": "model.arch", "layers": "model.layers", "hidden": "model.hidden",
    "method": "method.name", "options": "method.options",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr", "weight_decay": "train.weight_decay",
    "warmup": "train.warmup", "seed": "train.seed", "device": "train.device", "threads": "train.threads",
    "progress": "train.progress", "teacher": "teacher", "out": "out",
}


def make_config(config: str | list | None = None, sets: list[str] = (), **options) -> dict:
    """Resolve a full config: defaults <- YAML files <- keyword options <- dotted sets."""
    files = [config] if isinstance(config, (str, Path)) else list(config or [])
    unknown = set(options) - set(OPTIONS)
    if unknown:
        from .errors import EarlykdError
        raise EarlykdError(f"unknown option(s) {sorted(unknown)} (known: {', '.join(OPTIONS)})")
    return resolve(files, {OPTIONS[k]: v for k, v in options.items()}, list(sets))


def load_dataset(name: str, archive: str | None = None, length: int = 100, val_fraction: float = 0.2,
                 split_seed: int = 0, test_path: str | None = None) -> Prepared:
    cfg = make_config(data=name, archive=archive, length=length, val_fraction=val_fraction, test_path=test_path)
    return prepare(load_raw(cfg["data"]), length, val_fraction, split_seed)


def train_teacher(config_file=None, sets=(), resume: bool = False, **options) -> runs.Run:
    return runs.train_teacher(make_config(config_file, sets, **options), resume=resume)


def distill(teacher: str | Path | runs.Run, config_file=None, sets=(), resume: bool = False, **options) -> runs.Run:
    teacher_dir = teacher.path if isinstance(teacher, runs.Run) else Path(teacher)
    return runs.distill(make_config(config_file, sets, teacher=str(teacher_dir), **options), resume=resume)


def evaluate(run: str | Path | runs.Run) -> dict:
    return runs.evaluate_run(run.path if isinstance(run, runs.Run) else run)


def predict(run: str | Path | runs.Run, series, full: bool = False) -> tuple[list[str], np.ndarray]:
    """`series`: an array (cases, length) or (cases, channels, length), a list of arrays, or a file path."""
    what = "input"
    if isinstance(series, (str, Path)):
        what = str(series)
        series, _ = read_array_file(series, need_labels=False)
    elif isinstance(series, np.ndarray):
        series = list(series[:, None, :] if series.ndim == 2 else series)
    labels, probs, _ = runs.predict(run.path if isinstance(run, runs.Run) else run, list(series), full, what)
    return labels, probs
