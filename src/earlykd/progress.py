"""Progress: a tqdm bar on a terminal; off a terminal (a log file, a pipe) a few plain lines."""
from __future__ import annotations

import sys
import time


class PlainProgress:
    """The tqdm calls used here, printing one line every `every` steps and at the end."""

    def __init__(self, iterable=None, total: int = 0, initial: int = 0, desc: str = "", every: int = 1,
                 unit: str = "it"):
        self.iterable, self.total, self.n, self.desc, self.unit = iterable, total, initial, desc, unit
        self.every, self.postfix, self.started, self.first = max(1, every), "", time.perf_counter(), initial
        self.printed = initial

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()

    def set_postfix(self, values: dict) -> None:
        self.postfix = "  ".join(f"{k} {v}" for k, v in values.items())

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def write(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n % self.every == 0 or self.n >= self.total:
            self._line()

    def _line(self) -> None:
        rate = (time.perf_counter() - self.started) / max(1, self.n - self.first)
        self.write(f"{self.desc}: {self.unit} {self.n}/{self.total}  {self.postfix}  ({rate:.2f} s/{self.unit})")
        self.printed = self.n

    def close(self) -> None:
        if self.printed != self.n:  # stopped early
            self._line()


def progress(iterable=None, total: int = 0, initial: int = 0, desc: str = "", unit: str = "it",
             enabled: bool = True, lines: int = 10, **tqdm_args):
    """tqdm when stderr is a terminal; otherwise about `lines` plain lines in all; nothing when disabled."""
    if enabled and not sys.stderr.isatty():
        return PlainProgress(iterable, total, initial, desc, max(1, (total - initial) // lines), unit)
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, **tqdm_args)
