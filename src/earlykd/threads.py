"""Torch CPU threads: a default that does not oversubscribe a shared or small machine.

Measured in benchmarks/threads_default.py (results in benchmarks/results/newcomer/): the models
here are small (batch 16-64, widths of 100-128), so extra intra-op threads gain little, while a
thread pool as large as the machine stalls badly as soon as another process holds a core.
"""
from __future__ import annotations

import os

from .errors import check, is_int

MAX_DEFAULT = 4
# A fixed cap, not one per machine: a config valid here stays valid elsewhere (threads do not change results).
# Above any machine's hardware threads; far below where OpenMP's thread stacks fail (100000 crashes torch).
MAX_THREADS = 1024


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_threads() -> int:
    """Half the usable cores, at least 1 and at most 4: 1 on a 2-core machine."""
    return max(1, min(MAX_DEFAULT, cores() // 2))


def apply(threads: int | None) -> int:
    """Set torch's intra-op threads (None: the default); returns the number set."""
    import torch
    check(threads is None or (is_int(threads) and threads >= 1),
          f"threads must be a positive integer (leave it unset for the default), got {threads!r}")
    check(threads is None or threads <= MAX_THREADS, f"threads must be at most {MAX_THREADS}, got {threads!r}")
    n = default_threads() if threads is None else int(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
