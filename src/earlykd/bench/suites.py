"""Benchmark suites (protocol.md): datasets, methods, earliness, seeds and the run settings.

Settings are nested config overrides (the keys of earlykd.config.DEFAULTS): `common` applies to
teachers and students, `teacher` and `student` on top. `options` fixes method options per method;
`grids` lists option values tried for every method that has the option; of those runs the one
with the lowest validation loss is kept (never the test split). Epochs are placeholders to be
tuned by measurement.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import EarlykdError

QUICK_DATASETS = ("GunPoint", "ArrowHead", "ItalyPowerDemand", "OSULeaf", "JapaneseVowels", "ACSF1")
LSTM3_100 = {"arch": "lstm", "layers": 3, "hidden": 100}
FCN_128 = {"arch": "fcn", "layers": 3, "hidden": 128}
FCN_64 = {"arch": "fcn", "layers": 3, "hidden": 64}


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    datasets: tuple[str, ...] | None          # None: every dataset of --archive, else the bundled UCR/UEA ones
    methods: tuple[str, ...] | None           # None: every registered method
    earliness: tuple[float, ...]
    seeds: tuple[int, ...]
    common: dict = field(default_factory=dict)
    teacher: dict = field(default_factory=dict)
    student: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # method -> {option: value}
    grids: dict = field(default_factory=dict)    # option -> [values], chosen by validation loss


SUITES = {s.name: s for s in (
    Suite("smoke", "tiny epochs and models; seconds; used by tests",
          datasets=("UnitTest", "GunPoint", "BasicMotions"), methods=None, earliness=(0.4, 0.8), seeds=(0, 1),
          common={"model": {"arch": "lstm", "layers": 1, "hidden": 16}, "prefix": {"mode": "truncate"},
                  "train": {"batch_size": 16}},
          teacher={"train": {"epochs": 3}}, student={"train": {"epochs": 2}}),
    # CPU: an FCN teacher (the protocol's reference network, which reaches its reference scores in
    # 100 epochs) and a half-width FCN student; LSTM3-100 needs several hundred epochs to converge.
    Suite("quick", "CPU suite: 6 bundled datasets, 3 seeds, FCN-128 teacher -> FCN-64 student, "
          "truncated prefixes, teacher 150 / student 100 epochs",
          datasets=QUICK_DATASETS, methods=("base", "kd", "fitnets", "gdpd"), earliness=(0.2, 0.4, 0.6, 0.8),
          seeds=(0, 1, 2),
          common={"prefix": {"mode": "truncate"}, "train": {"batch_size": 16}},
          teacher={"model": FCN_128, "train": {"epochs": 150}},
          student={"model": FCN_64, "train": {"epochs": 100}}),
    Suite("paper", "the authors' protocol: 600 epochs, warm-up 300, 5 seeds, lambda by validation; GPU or cluster",
          datasets=None, methods=("base", "kd", "fitnets", "gdpd"), earliness=(0.2, 0.4, 0.6, 0.8),
          seeds=(0, 1, 2, 3, 4),
          common={"model": LSTM3_100, "prefix": {"mode": "stretch"}, "train": {"batch_size": 16, "epochs": 600}},
          student={"train": {"warmup": 300}}, grids={"weight": [0.1, 1, 10]}),
)}

# Without --archive the paper suite runs on the bundled UCR/UEA datasets of protocol.md.
PAPER_BUNDLED = QUICK_DATASETS + ("BasicMotions", "PickupGestureWiimoteZ")


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise EarlykdError(f"unknown suite '{name}' (known: {', '.join(SUITES)})")
    return SUITES[name]
