"""Clean, resample, split and standardise raw series into tensors."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split

from ..errors import EarlykdError, check
from .load import RawData


@dataclass
class Prepared:
    """Tensors of shape (cases, channels, length) and integer labels, ready for training."""
    name: str
    classes: list[str]
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    source_length: int | None
    info: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"X_{name}"), getattr(self, f"y_{name}")

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for t in (self.X_train, self.y_train, self.X_val, self.y_val, self.X_test, self.y_test):
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def clean_series(x: np.ndarray, where: str) -> np.ndarray:
    """Reject inf and all-NaN; trim trailing NaN (shorter series); interpolate inner NaN."""
    x = np.asarray(x, dtype=np.float64)
    check(not np.isinf(x).any(), f"{where}: infinite value")
    finite = np.isfinite(x)
    check(finite.any(axis=-1).all(), f"{where}: series is all NaN" + (" in some channel" if x.shape[0] > 1 else ""))
    last = int(np.nonzero(finite.any(axis=0))[0][-1]) + 1
    x = x[:, :last]
    if not np.isfinite(x).all():
        steps = np.arange(x.shape[-1])
        x = x.copy()
        for c in range(x.shape[0]):
            ok = np.isfinite(x[c])
            x[c] = np.interp(steps, steps[ok], x[c, ok])
    return x


def resample(series: list[np.ndarray], length: int) -> torch.Tensor:
    """Linear interpolation of every series to `length` steps (corners aligned)."""
    out = torch.empty(len(series), series[0].shape[0], length, dtype=torch.float32)
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(series):
        groups.setdefault(s.shape[-1], []).append(i)
    for n, idx in groups.items():
        block = torch.tensor(np.stack([series[i] for i in idx]), dtype=torch.float32)
        if n == 1:
            block = block.expand(-1, -1, 2)
        if block.shape[-1] != length:
            block = F.interpolate(block, size=length, mode="linear", align_corners=True)
        out[idx] = block
    return out


def standardise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Per-channel standardisation of (cases, channels, steps) with stored training statistics."""
    return (x - mean[None, :, None]) / std[None, :, None]


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
                           "a stratified validation split is impossible; use --val-fraction 0")
    n_val = max(n_classes, math.ceil(fraction * len(y)))
    check(len(y) - n_val >= n_classes,
          f"{where}: {len(y)} training cases are too few for a {fraction:.0%} stratified validation split; use --val-fraction 0")
    fit, val = train_test_split(index, test_size=n_val, stratify=y, random_state=seed)
    return np.sort(fit), np.sort(val)


def prepare(raw: RawData, length: int = 100, val_fraction: float = 0.2, split_seed: int = 0) -> Prepared:
    where_train, where_test = raw.where
    X = _clean_all(raw.X_train, where_train)
    Xt = _clean_all(raw.X_test, where_test)
    check(X[0].shape[0] == Xt[0].shape[0],
          f"{raw.name}: train has {X[0].shape[0]} channels but test has {Xt[0].shape[0]}")
    classes = sorted(set(raw.y_train.tolist()))
    check(len(classes) >= 2, f"{where_train}: training labels hold a single class ('{classes[0]}'); need at least 2")
    unseen = sorted(set(raw.y_test.tolist()) - set(classes))
    check(not unseen, f"{where_test}: test labels {unseen[:5]} do not occur in training")
    code = {c: i for i, c in enumerate(classes)}
    y = np.array([code[c] for c in raw.y_train])
    yt = np.array([code[c] for c in raw.y_test])
    fit, val = _split(y, val_fraction, split_seed, len(classes), where_train)
    lengths = {s.shape[-1] for s in raw.X_train + raw.X_test}
    Xr, Xtr = resample(X, length), resample(Xt, length)
    mean = Xr[fit].mean(dim=(0, 2))
    std = Xr[fit].std(dim=(0, 2))
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    Xr, Xtr = standardise(Xr, mean, std), standardise(Xtr, mean, std)
    yy, yyt = torch.tensor(y), torch.tensor(yt)
    return Prepared(raw.name, classes, Xr[fit], yy[fit], Xr[val], yy[val], Xtr, yyt, mean, std,
                    source_length=lengths.pop() if len(lengths) == 1 else None,
                    info={"source": raw.source, "train": len(fit), "val": len(val), "test": len(yt),
                          "length": length, "val_fraction": val_fraction, "split_seed": split_seed})
