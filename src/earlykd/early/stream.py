"""Streaming predict: series arrive sample by sample; each decision is printed as soon as it is taken.

Input, one line per event: `series_id,value[,value...]`.
- univariate model: the values are the next samples of that series, in order (one or more);
- C-channel model: the line is one time step, exactly one value per channel.
An empty value or `nan` is a gap (filled from earlier values, as in the prefix contract); blank
lines and lines starting with `#` are skipped; a first line with no number after the id is a header.

An anytime run (`earlykd early`) decides with its calibrated policy at each checkpoint the series
reaches; a per-earliness student classifies once the series holds its trained prefix,
ceil(e * T) samples. Either way a decision uses only the samples received so far.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import EarlykdError, check
from ..prefix import check_values
from .decider import Decider

POLL_SECONDS = 0.05


def load_stream_decider(run_dir: str | Path, policy: str | None = None) -> Decider:
    """A Decider for an anytime run (its calibrated policy) or a per-earliness student (one checkpoint)."""
    from .. import runs
    from ..decide import build_policy
    from ..train import load_model
    from .run import load_decider
    _, record = runs.read_run(run_dir)
    kind = record.get("kind")
    if kind == "anytime":
        return load_decider(run_dir, policy)
    check(kind == "student", f"{run_dir}: is a {kind} run; --stream needs a student "
                             "(an `earlykd early` run, or a `distill` run)")
    check(policy is None, f"{run_dir}: --policy applies to `earlykd early` runs; a per-earliness student "
                          "classifies once its trained prefix has arrived")
    model, meta, tensors = load_model(Path(run_dir) / runs.MODEL_FILE)
    check(meta.get("reference_length"), f"{run_dir}: trained before the prefix contract; train it again")
    prefix = meta["prefix"]
    # one checkpoint, the last: the policy never has a choice, the series is classified there
    return Decider(model, build_policy("threshold"), [prefix["earliness"]], prefix["mode"], prefix["channels"],
                   meta["reference_length"], meta["length"], tensors["data.mean"], tensors["data.std"],
                   meta["classes"])


def _number(text: str, lineno: int, column: int) -> float:
    text = text.strip()
    if text == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise EarlykdError(f"line {lineno}, field {column}: {text[:30]!r} is not a number") from None
    check_values(np.array(value), f"line {lineno}, field {column}")
    return value


def parse_line(text: str, lineno: int, channels: int) -> tuple[str, np.ndarray] | None:
    """-> (series id, (channels, samples) values), or None for a blank, comment or header line."""
    text = text.strip()
    if not text or text.startswith("#"):
        return None
    fields = text.split(",")
    key = fields[0].strip()
    check(key != "", f"line {lineno}, field 1: empty series id")
    check(len(fields) > 1, f"line {lineno}: no value after the series id (expected: id,value[,value...])")
    if lineno == 1 and all(not _is_number(f) for f in fields[1:]):
        return None  # header
    values = np.array([_number(f, lineno, i + 2) for i, f in enumerate(fields[1:])])
    if channels == 1:
        return key, values[None, :]
    check(len(values) == channels, f"line {lineno}: {len(values)} value(s) for a {channels}-channel model; "
                                   "each line is one time step: the series id, then one value per channel")
    return key, values[:, None]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return text.strip() == ""


@dataclass
class Series:
    state: dict
    columns: list = field(default_factory=list)   # (channels,) samples in arrival order


class Stream:
    """Per-series buffers and policy state around one Decider."""

    def __init__(self, decider: Decider):
        self.decider = decider
        self.channels = len(decider.mean)
        self.needed = decider.samples                  # samples at each checkpoint
        self.open: dict[str, Series] = {}
        self.decided: set[str] = set()
        self.ignored = 0                               # lines for series already decided

    def feed(self, key: str, values: np.ndarray) -> dict | None:
        """Append (channels, k) samples to a series; -> its decision if this made the policy stop."""
        if key in self.decided:
            self.ignored += 1
            return None
        series = self.open.get(key)
        if series is None:
            series = self.open[key] = Series(self.decider.start(1))
        series.columns.extend(values.T)
        state = series.state
        if state["next"] >= len(self.needed):   # every checkpoint passed with no value observed: it stays undecided
            return None
        if len(series.columns) < self.needed[state["next"]]:
            return None
        self.decider.advance(state, [np.stack(series.columns, axis=1)])
        stop = int(state["stop"][0])
        if stop < 0:
            return None
        del self.open[key]
        self.decided.add(key)
        probs = state["probs"][0]
        return {"series": key, "label": self.decider.classes[int(probs.argmax())], "checkpoint": stop,
                "samples": int(self.needed[stop]), "earliness": float(self.decider.earliness[stop]),
                "probs": probs}


def read_lines(source, follow: bool = False, idle_timeout: float = 10.0):
    """(line number, text) from an open text or binary file (bytes are decoded as UTF-8 a whole line at a time,
    so an error names its line); with `follow`, wait for more until nothing new has arrived for
    `idle_timeout` seconds (a partial last line waits for its newline)."""
    lineno, pending, last = 0, None, time.monotonic()

    def text(line):
        if isinstance(line, str):
            return line
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            raise EarlykdError(f"line {lineno + 1}: not UTF-8 text") from None
    while True:
        chunk = source.readline()
        if chunk:
            pending = chunk if pending is None else pending + chunk
            last = time.monotonic()
            if not pending.endswith(b"\n" if isinstance(pending, bytes) else "\n") and follow:
                continue
            line = text(pending)
            lineno += 1
            yield lineno, line
            pending = None
        elif not follow or time.monotonic() - last >= idle_timeout:
            if pending:
                yield lineno + 1, text(pending)
            return
        else:
            time.sleep(POLL_SECONDS)


def header(decider: Decider) -> str:
    return ",".join(["series", "label", "checkpoint", "samples", "earliness", "line"]
                    + [f"p_{c}" for c in decider.classes])


def row(decision: dict, lineno: int) -> str:
    return ",".join([decision["series"], str(decision["label"]), str(decision["checkpoint"]),
                     str(decision["samples"]), f"{decision['earliness']:.6f}", str(lineno)]
                    + [f"{p:.6f}" for p in decision["probs"]])


def run_stream(decider: Decider, source, out=None, follow: bool = False, idle_timeout: float = 10.0) -> dict:
    """Read lines, print one CSV row per decision as it is taken (flushed); -> a summary."""
    out = out or sys.stdout
    stream = Stream(decider)
    out.write(header(decider) + "\n")
    out.flush()
    lines = 0
    try:
        for lineno, text in read_lines(source, follow, idle_timeout):
            lines = lineno
            parsed = parse_line(text, lineno, stream.channels)
            if parsed is None:
                continue
            decision = stream.feed(*parsed)
            if decision is not None:
                out.write(row(decision, lineno) + "\n")
                out.flush()
    except KeyboardInterrupt:
        pass
    return {"lines": lines, "decided": len(stream.decided), "undecided": sorted(stream.open),
            "ignored": stream.ignored}
