"""Shared fixtures: tiny runs on the bundled UnitTest dataset, and a CLI runner."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from earlykd import cli

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Tiny but real: 1-layer LSTM of width 8 on UnitTest resampled to 32 steps.
TINY = ["--data", "UnitTest", "--length", "32", "--arch", "lstm", "--layers", "1", "--hidden", "8",
        "--epochs", "3", "--batch-size", "8", "--no-progress"]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; an uncaught exception (a traceback) fails the calling test."""
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_clean_error(code: int, err: str, *needles: str) -> None:
    """Exit code 2 and exactly one line on stderr, naming the problem."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("earlykd: error: "), err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "run"
    assert cli.main(["teacher", *TINY, "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="session")
def student_dir(teacher_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("student") / "run"
    code = cli.main(["distill", "--teacher", str(teacher_dir), "--method", "kd", "--earliness", "0.5",
                     "--epochs", "3", "--batch-size", "8", "--no-progress", "--out", str(path)])
    assert code == 0
    return path


@pytest.fixture
def student_copy(student_dir, tmp_path):
    """A copy of the shared student run that a test may damage."""
    return shutil.copytree(student_dir, tmp_path / "student")


@pytest.fixture(scope="session")
def anytime_dir(teacher_dir, tmp_path_factory):
    """A small anytime run (Base, two policies); tests that damage it work on a copy."""
    path = tmp_path_factory.mktemp("bad-anytime") / "a"
    assert cli.main(["early", "--teacher", str(teacher_dir), "--method", "base", "--policy", "threshold,calibrated",
                     "--levels", "0.5", "--epochs", "2", "--batch-size", "8", "--no-progress", "--out", str(path)]) == 0
    return path


@pytest.fixture
def series_file(tmp_path):
    """Four new univariate series of 24 samples, as a .npy file."""
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).standard_normal((4, 24)))
    return path


def interrupt_at(monkeypatch, epoch: int):
    """Make training raise KeyboardInterrupt when it reaches `epoch`; returns a function that undoes it."""
    from earlykd.train.loop import Trainer
    real = Trainer._train_epoch

    def interrupted(self, train):
        if self.epoch == epoch:
            raise KeyboardInterrupt
        return real(self, train)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)
    return lambda: monkeypatch.setattr(Trainer, "_train_epoch", real)
