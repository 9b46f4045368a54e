"""Validate, split and standardise raw series; the model's views are cut from them on demand."""
from __future__ import annotations

import hashlib
import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ..errors import EarlykdError, check
from ..prefix import check_values, raw_view, student_view
from .load import RawData

SPLITS = ("train", "val", "test")
NO_VAL = "set the validation fraction to 0 (--val-fraction 0, or val_fraction=0 in Python)"


@dataclass
class Prepared:
    """Raw series per split (trailing NaN trimmed, gaps kept) and integer labels, with the time
    scales and training statistics that turn them into model inputs.

    `view(split, earliness, mode, channels)` is the only way series become tensors: the teacher's
    view is earliness 1, a student's view depends only on the first ceil(e * T) raw samples.
    """
    name: str
    classes: list[str]
    series: dict[str, list[np.ndarray]]
    labels: dict[str, torch.Tensor]
    mean: torch.Tensor
    std: torch.Tensor
    reference_length: int            # T: raw samples of a full series (the longest training series)
    length: int                      # L: model steps of a full series
    equal_length: bool
    info: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)   # one line per kind of series read other than as given
    _views: dict = field(default_factory=dict, repr=False)

    @property
    def channels(self) -> int:
        return self.mean.numel()

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def view(self, split: str, earliness: float = 1.0, mode: str = "stretch",
             channels: list[int] | None = None) -> torch.Tensor:
        key = (split, float(earliness), mode, tuple(channels) if channels is not None else None)
        if key not in self._views:
            if not self.series[split]:
                self._views[key] = torch.zeros(0, len(channels) if channels else self.channels, self.length)
            else:
                self._views[key] = student_view(self.series[split], earliness, mode, self.reference_length,
                                                self.length, self.mean, self.std, channels)
        return self._views[key]

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The full-series (teacher) view of a split and its labels."""
        return self.view(name), self.labels[name]

    X_train = property(lambda self: self.view("train"))
    X_val = property(lambda self: self.view("val"))
    X_test = property(lambda self: self.view("test"))
    y_train = property(lambda self: self.labels["train"])
    y_val = property(lambda self: self.labels["val"])
    y_test = property(lambda self: self.labels["test"])

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"{self.reference_length}/{self.length}".encode())
        for s in SPLITS:
            for x in self.series[s]:
                h.update(np.ascontiguousarray(x).tobytes())
            h.update(self.labels[s].numpy().tobytes())
        return h.hexdigest()[:16]


def clean_series(x: np.ndarray, where: str, partial: bool = False) -> np.ndarray:
    """Reject inf and an all-NaN channel (`partial`, a new series as far as it has arrived: only an all-NaN series,
    since a channel may not have begun yet); trim trailing NaN (a shorter series). Gaps stay NaN: the view fills
    them from earlier values only."""
    x = np.asarray(x, dtype=np.float64)
    check_values(x, where)
    finite = np.isfinite(x)
    check(finite.any() if partial else finite.any(axis=-1).all(),
          f"{where}: series is all NaN" + (" in some channel" if x.shape[0] > 1 and not partial else ""))
    last = int(np.nonzero(finite.any(axis=0))[0][-1]) + 1
    return x[:, :last]


def clean_rows(series: list[np.ndarray], channels: list[int], what: str) -> list[np.ndarray]:
    """New series for a trained model: each (channels, samples) with one of the channel counts it takes,
    cleaned as in training; one line names a bad row."""
    check(len(series) > 0, f"{what}: no series")
    rows = []
    for i, s in enumerate(series):
        s = np.atleast_2d(s)
        check(s.shape[0] in channels, f"{what}: row {i + 1}: {s.shape[0]} channel(s), the model expects "
                                      + " or ".join(map(str, channels)))
        rows.append(clean_series(s, f"{what}: row {i + 1}", partial=True))
    return rows


def longer_than_reference(lengths, reference_length: int, what: str = "row(s)") -> list[str]:
    """A warning for series longer than T (the longest training series): they are read up to T samples."""
    longer = sum(int(n) > reference_length for n in lengths)
    return [f"{longer} {what} {'is' if longer == 1 else 'are'} longer than the longest training series "
            f"({reference_length} samples); read up to sample {reference_length}"] if longer else []


def _clean_all(series: list[np.ndarray], what: str) -> list[np.ndarray]:
    check(len(series) > 0, f"{what}: no series")
    channels = series[0].shape[0]
    cleaned = []
    for i, s in enumerate(series):
        check(s.shape[0] == channels, f"{what}: row {i + 1}: {s.shape[0]} channels, expected {channels}")
        cleaned.append(clean_series(s, f"{what}: row {i + 1}"))
    return cleaned


def _split(y: np.ndarray, fraction: float, seed: int, n_classes: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    index = np.arange(len(y))
    if fraction == 0:
        return index, index[:0]
    counts = np.bincount(y, minlength=n_classes)
    if counts.min() < 2:
        raise EarlykdError(f"{where}: a class has a single training sample: "
                           f"a stratified validation split is impossible; {NO_VAL}")
    n_val = max(n_classes, math.ceil(fraction * len(y)))
    check(len(y) - n_val >= n_classes,
          f"{where}: {len(y)} training cases are too few for a {fraction:.0%} stratified validation split; {NO_VAL}")
    fit, val = train_test_split(index, test_size=n_val, stratify=y, random_state=seed)
    return np.sort(fit), np.sort(val)


def training_statistics(series: list[np.ndarray], reference_length: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the full-series views of the training series."""
    x = raw_view(series, 1.0, "stretch", reference_length, length)
    mean = np.nanmean(x, axis=(0, 2))
    std = np.nanstd(x, axis=(0, 2), ddof=1)
    std = np.where(std > 1e-8, std, 1.0)
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)


def prepare(raw: RawData, length: int = 100, val_fraction: float = 0.2, split_seed: int = 0) -> Prepared:
    check(isinstance(val_fraction, numbers.Real) and not isinstance(val_fraction, bool) and 0 <= val_fraction < 1,
          f"val_fraction {val_fraction!r} must be in [0, 1)")
    where_train, where_test = raw.where
    X = _clean_all(raw.X_train, where_train)
    Xt = _clean_all(raw.X_test, where_test)
    check(X[0].shape[0] == Xt[0].shape[0],
          f"{where_test}: train has {X[0].shape[0]} channels but test has {Xt[0].shape[0]}")
    classes = sorted(set(raw.y_train.tolist()))
    check(len(classes) >= 2, f"{where_train}: training labels hold a single class ('{classes[0]}'); need at least 2")
    unseen = sorted(set(raw.y_test.tolist()) - set(classes))
    check(not unseen, f"{where_test}: test labels {unseen[:5]} do not occur in training")
    code = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([code[c] for c in raw.y_train])
    yt = torch.tensor([code[c] for c in raw.y_test])
    fit, val = _split(y.numpy(), val_fraction, split_seed, len(classes), where_train)
    train_lengths = {s.shape[-1] for s in X}
    reference = max(train_lengths)
    series = {"train": [X[i] for i in fit], "val": [X[i] for i in val], "test": Xt}
    mean, std = training_statistics(series["train"], reference, length)
    return Prepared(raw.name, classes, series, {"train": y[fit], "val": y[val], "test": yt}, mean, std,
                    reference_length=reference, length=length,
                    equal_length=len(train_lengths | {s.shape[-1] for s in Xt}) == 1,
                    warnings=longer_than_reference([s.shape[-1] for s in Xt], reference, "test series"),
                    info={"source": raw.source, "train": len(fit), "val": len(val), "test": len(yt),
                          "length": length, "reference_length": reference,
                          "val_fraction": val_fraction, "split_seed": split_seed})
