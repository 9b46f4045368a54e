"""What the student sees: the first part of each series, optionally a subset of channels."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .errors import check

MODES = ("stretch", "truncate")


def prefix_steps(earliness: float, length: int) -> int:
    """ceil(e * L) observed steps; an earliness below one whole step is an error."""
    check(0 < earliness <= 1, f"earliness must be in (0, 1], got {earliness}")
    check(earliness * length >= 1 - 1e-9,
          f"earliness {earliness} of {length} steps leaves an empty prefix (< 1 step); use at least {1 / length:.4g}")
    return min(length, max(1, math.ceil(round(earliness * length, 9))))


def make_prefix(x: torch.Tensor, earliness: float, mode: str = "stretch",
                channels: list[int] | None = None) -> torch.Tensor:
    """x: (cases, channels, L). stretch: prefix interpolated back to L; truncate: the raw prefix."""
    check(mode in MODES, f"prefix mode must be one of {MODES}, got {mode!r}")
    if channels is not None:
        check(len(channels) > 0 and all(0 <= c < x.shape[1] for c in channels),
              f"channel subset {channels} is not within 0..{x.shape[1] - 1}")
        x = x[:, list(channels)]
    length = x.shape[-1]
    keep = prefix_steps(earliness, length)
    part = x[..., :keep]
    if mode == "truncate" or keep == length:
        return part.contiguous()
    if keep == 1:
        return part.expand(-1, -1, length).contiguous()
    return F.interpolate(part, size=length, mode="linear", align_corners=True)
