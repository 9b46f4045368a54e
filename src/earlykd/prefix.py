"""What the student sees at earliness e: a function of the first ceil(e * T) raw samples only.

The prefix contract (docs/protocol.md): cut in raw time first, then fill gaps from earlier
values, then resample only what was cut onto the model's time scale. T is the dataset's
reference length (its series length, or the longest training series for unequal lengths);
L is the model's length. A series that ended before ceil(e * T) samples is held at its last
value, which is what a stream that has stopped sends. The teacher's view is the same
function at e = 1.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .errors import EarlykdError, check

MODES = ("stretch", "truncate")
FLOAT32_MAX = float(np.finfo(np.float32).max)   # models compute in float32


def check_values(x: np.ndarray, where: str) -> None:
    """No infinite value, and none beyond float32's range (it would reach the model as infinite)."""
    check(not np.isinf(x).any(), f"{where}: infinite value")
    big = np.abs(np.nan_to_num(x)) > FLOAT32_MAX
    if big.any():
        raise EarlykdError(f"{where}: value {x[big][0]:.3g} is beyond float32's range (±3.4e38), in which models compute")


def check_cases(X: np.ndarray, where: str) -> None:
    """check_values of a batch (cases first), naming the first case at fault."""
    bad = np.isinf(X) | (np.abs(np.nan_to_num(X)) > FLOAT32_MAX)
    if bad.any():
        case = int(bad.reshape(len(X), -1).any(1).argmax())
        check_values(X[case], f"{where}: case {case}")


def _ceil(x: float) -> int:
    return math.ceil(round(x, 9))


def prefix_steps(earliness: float, length: int) -> int:
    """ceil(e * L) model steps; an earliness below one whole step is an error."""
    check(0 < earliness <= 1, f"earliness must be in (0, 1], got {earliness}")
    check(earliness * length >= 1 - 1e-9,
          f"earliness {earliness} of {length} steps leaves an empty prefix (< 1 step); use at least {1 / length:.4g}")
    return min(length, max(1, _ceil(earliness * length)))


def observed_samples(earliness: float, reference_length: int) -> int:
    """ceil(e * T) raw samples, at least one."""
    check(0 < earliness <= 1, f"earliness must be in (0, 1], got {earliness}")
    return min(reference_length, max(1, _ceil(earliness * reference_length)))


def ready_checkpoints(series: list[np.ndarray], samples, channels: list[int] | None = None) -> np.ndarray:
    """Per series, the first checkpoint (index into `samples`, the raw samples each checkpoint needs) by which one
    of its channels (of `channels`, if given) holds an observed value: a case decides nothing before it.
    len(samples) for a series with no observed value."""
    first = []
    for s in series:
        part = np.atleast_2d(s)[list(channels)] if channels is not None else np.atleast_2d(s)
        seen = np.flatnonzero(~np.isnan(part).all(axis=0))
        first.append(seen[0] if len(seen) else part.shape[-1])
    return np.searchsorted(np.asarray(samples), np.asarray(first, dtype=np.int64), side="right")


def observe(series: list[np.ndarray], keep: int) -> np.ndarray:
    """(N, C, keep): the first `keep` raw samples of each (C, n) series.

    Missing samples (NaN gaps, or a series that ended) take the last observed value of their
    channel, never a later one; NaN before a channel's first observation stays NaN.
    """
    out = np.full((len(series), series[0].shape[0], keep), np.nan)
    for i, s in enumerate(series):
        part = s[:, :keep]
        out[i, :, :part.shape[1]] = part
    index = np.where(np.isfinite(out), np.arange(keep), 0)
    np.maximum.accumulate(index, axis=-1, out=index)
    return np.take_along_axis(out, index, axis=-1)


def model_positions(earliness: float, keep: int, reference_length: int, length: int, mode: str) -> np.ndarray:
    """Where, in raw samples, each model step of the prefix sits.

    stretch: the `keep` samples spread over all L steps (corners aligned). truncate: the first
    ceil(e * L) steps of the full series' time scale, held at the last observed sample
    where a step would fall after it.
    """
    check(mode in MODES, f"prefix mode must be one of {MODES}, got {mode!r}")
    steps = prefix_steps(earliness, length)
    if mode == "stretch":
        positions = np.arange(length) * ((keep - 1) / max(length - 1, 1))
    else:
        positions = np.arange(steps) * ((reference_length - 1) / max(length - 1, 1))
    return np.minimum(positions, keep - 1)


def interpolate(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of (..., n) at fractional sample positions within [0, n - 1]."""
    lo = np.floor(positions).astype(np.int64)
    hi = np.minimum(lo + 1, x.shape[-1] - 1)
    w = positions - lo
    return x[..., lo] * (1 - w) + x[..., hi] * w


def check_channels(channels: list[int] | None, n: int) -> None:
    check(channels is None or (len(channels) > 0 and all(0 <= c < n for c in channels)),
          f"channel subset {channels} is not within 0..{n - 1}")


def raw_view(series: list[np.ndarray], earliness: float, mode: str, reference_length: int, length: int,
             channels: list[int] | None = None) -> np.ndarray:
    """(N, C', steps) float64 in raw units; NaN only before a channel's first observation."""
    check(len(series) > 0, "no series")
    if channels is not None:
        check_channels(channels, series[0].shape[0])
        series = [s[list(channels)] for s in series]
    keep = observed_samples(earliness, reference_length)
    positions = model_positions(earliness, keep, reference_length, length, mode)
    return interpolate(observe(series, keep), positions)


def standardise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Per-channel standardisation of (cases, channels, steps) with stored training statistics."""
    return (x - mean[None, :, None]) / std[None, :, None]


def student_view(series: list[np.ndarray], earliness: float, mode: str, reference_length: int, length: int,
                 mean: torch.Tensor, std: torch.Tensor, channels: list[int] | None = None) -> torch.Tensor:
    """The model's input: the raw view, standardised with training statistics; a channel not yet
    observed sits at its training mean (0)."""
    x = torch.from_numpy(raw_view(series, earliness, mode, reference_length, length, channels)).float()
    if channels is not None:
        mean, std = mean[list(channels)], std[list(channels)]
    x = standardise(x, mean, std)
    if torch.isinf(x).any():
        first = int(torch.isinf(x).flatten(1).any(1).int().argmax()) + 1
        raise EarlykdError(f"series {first} of {len(x)}: a value overflows float32 once standardised with the "
                           "training statistics")
    return torch.nan_to_num(x, nan=0.0)


def make_prefix(x: torch.Tensor, earliness: float, mode: str = "stretch",
                channels: list[int] | None = None) -> torch.Tensor:
    """The view of series already on the model's time scale (T = L = x.shape[-1]), as a tensor."""
    series = list(x.detach().cpu().double().numpy())
    length = x.shape[-1]
    out = raw_view(series, earliness, mode, length, length, channels)
    return torch.from_numpy(out).to(x.dtype)
