"""Damaged files a run reads back: a checkpoint's metadata, a run record's kind, a resumable state, cross-fit fold
files, a results database; and settings too large for memory. Each is one line and exit 2 (or an EarlykdError),
never a traceback, and nothing is written half."""
from __future__ import annotations

import json
import resource
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY, assert_clean_error, interrupt_at, run_cli
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from earlykd import cli
from earlykd.errors import EarlykdError, did_you_mean, lookup


def _damage(path, change):
    """Rewrite the safetensors file `path` with change(tensors, meta) applied to its tensors and decoded meta."""
    with safe_open(str(path), framework="pt") as fh:
        header = dict(fh.metadata())
    tensors, meta = load_file(str(path)), json.loads(header["meta"])
    change(tensors, meta)
    save_file(tensors, str(path), metadata={**header, "meta": json.dumps(meta)})


# -- checkpoint metadata -------------------------------------------------------------------------------------------
def _set(key, value):
    def change(tensors, meta):
        *parents, last = key.split(".")
        for p in parents:
            meta = meta[p]
        meta[last] = value
    return change


@pytest.mark.parametrize("change, needle", [
    (_set("model.arch", 5), "model.arch"),
    (_set("model.layers", 5000), "model.layers"),   # a damaged count must not build for hours
    (lambda t, m: m.pop("classes"), "(classes"),
    (_set("classes", []), "(classes"),
    (_set("classes", ["1", "2", "3"]), "(classes"),
    (lambda t, m: m.pop("prefix"), "(prefix"),
    (_set("length", 0), "(length"),
    (_set("length", "x"), "(length"),
    (_set("reference_length", -5), "(reference_length"),
    (_set("reference_length", 0), "(reference_length"),
    (_set("prefix.earliness", "x"), "(prefix.earliness"),
    (_set("prefix.earliness", 0), "(prefix.earliness"),
    (_set("prefix.mode", "zoom"), "(prefix.mode"),
    (_set("prefix.channels", [5]), "(prefix.channels"),
    (_set("kind", "zzz"), "(kind"),
    (lambda t, m: t.pop("data.std"), "data.mean, data.std"),
])
def test_damaged_checkpoint_metadata_is_one_line_naming_the_field(student_copy, series_file, change, needle, capsys):
    _damage(student_copy / "model.safetensors", change)
    code, _, err = run_cli(capsys, "predict", student_copy, "--input", series_file)
    assert_clean_error(code, err, "model.safetensors: ", needle)


@pytest.mark.parametrize("change, needle", [
    (_set("prefix.earliness", [0.5, 2]), "prefix.earliness"),
    (_set("prefix.earliness", 0.5), "prefix.earliness"),
    (_set("classes", ["1", "2", "3"]), "classes"),
])
def test_damaged_metadata_of_an_anytime_run_is_one_line(anytime_dir, tmp_path, series_file, change, needle, capsys):
    copy = shutil.copytree(anytime_dir, tmp_path / "a")
    _damage(copy / "model.safetensors", change)
    code, _, err = run_cli(capsys, "predict", copy, "--input", series_file)
    assert_clean_error(code, err, "model.safetensors: damaged checkpoint metadata", needle)


def test_a_name_that_is_not_text_gets_no_suggestion_and_no_traceback():
    assert did_you_mean(5, ["fcn", "lstm"]) == "known: fcn, lstm"
    with pytest.raises(EarlykdError, match="unknown architecture"):
        lookup({"fcn": 1}, ["fcn"], "architecture")


# -- run records ---------------------------------------------------------------------------------------------------
def test_a_run_record_of_an_unknown_kind_is_one_line(anytime_dir, student_copy, series_file, tmp_path, capsys):
    copy = shutil.copytree(anytime_dir, tmp_path / "a")
    for run in (copy, student_copy):
        record = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**record, "kind": "zzz"}))
    code, _, err = run_cli(capsys, "evaluate", copy)
    assert_clean_error(code, err, "run.json", "kind 'zzz'", "teacher, student, anytime")
    code, _, err = run_cli(capsys, "predict", student_copy, "--input", series_file)
    assert_clean_error(code, err, "run.json", "kind 'zzz'")


# -- resumable state -----------------------------------------------------------------------------------------------
DISTILL = ["distill", "--method", "kd", "--earliness", "0.5", "--epochs", "4", "--batch-size", "8", "--no-progress",
           "--set", "train.checkpoint_every=1"]


@pytest.fixture(scope="module")
def interrupted(teacher_dir, tmp_path_factory):
    """A distillation interrupted after two epochs: its out folder holds last.safetensors."""
    out = tmp_path_factory.mktemp("interrupted") / "st"
    with pytest.MonkeyPatch.context() as monkeypatch:
        interrupt_at(monkeypatch, 2)
        assert cli.main([*DISTILL, "--teacher", str(teacher_dir), "--out", str(out)]) != 0
    assert (out / "last.safetensors").is_file()
    return out


@pytest.mark.parametrize("change, needle", [
    (lambda t, m: m.pop("next_epoch"), "no next_epoch"),
    (lambda t, m: m.pop("best_epoch"), "no best_epoch"),
    (lambda t, m: m.pop("best_score"), "no best_score"),
    (lambda t, m: m.pop("history"), "no history"),
    (lambda t, m: m.pop("param_groups"), "no param_groups"),
    (lambda t, m: m.pop("rng_numpy"), "no rng_numpy"),
    (lambda t, m: m.pop("stale"), "no stale"),
    (lambda t, m: m.pop("layout"), "damaged"),
    (_set("next_epoch", "x"), "next_epoch is 'x'"),
    (_set("stale", "x"), "stale is 'x'"),
    (_set("history", "x"), "history is 'x'"),
    (_set("best_score", ["x"]), "best_score"),
    (_set("param_groups", "x"), "param_groups is 'x'"),
    (_set("param_groups", [1]), "param_groups"),
    (_set("rng_numpy", "x"), "rng_numpy is 'x'"),
    (_set("rng_numpy", {"bit_generator": "x"}), "damaged"),
    (_set("model", "x"), "model is 'x'"),
])
def test_a_damaged_saved_state_is_one_line(interrupted, teacher_dir, tmp_path, change, needle, capsys):
    out = shutil.copytree(interrupted, tmp_path / "st")
    _damage(out / "last.safetensors", change)
    code, _, err = run_cli(capsys, *DISTILL, "--teacher", teacher_dir, "--out", out, "--resume")
    assert_clean_error(code, err, "last.safetensors: its saved state is damaged", needle, "without --resume")


# -- cross-fit folds -----------------------------------------------------------------------------------------------
def _early_crossfit(teacher_dir, out, *more):
    return ["early", "--teacher", teacher_dir, "--method", "base", "--levels", "0.5", "--epochs", "2",
            "--batch-size", "8", "--no-progress", "--set", "early.crossfit=2", "--out", out, *more]


def _truncated(path):
    np.save(path, np.zeros((1, 1000, 2), np.float32))
    path.write_bytes(path.read_bytes()[:300])


@pytest.mark.parametrize("write, needle", [
    (lambda p: p.write_bytes(b"\x00garbage" * 40), "unreadable"),
    (lambda p: p.write_bytes(b""), "unreadable"),
    (_truncated, "unreadable"),
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), "unreadable"),
    (lambda p: np.save(p, np.zeros((3, 4), np.float32)), "shape (3, 4)"),
    (lambda p: np.save(p, np.full((1, 1, 2), "x")), "<U1"),
    (lambda p: np.savez(open(p, "wb"), a=np.zeros(2)), "not a single array"),
])
def test_a_damaged_fold_file_is_one_line_on_resume(teacher_dir, tmp_path, write, needle, capsys):
    out = tmp_path / "a"
    out.mkdir()
    write(out / "crossfit-fold0.npy")
    code, _, err = run_cli(capsys, *_early_crossfit(teacher_dir, out, "--resume"))
    assert_clean_error(code, err, "crossfit-fold0.npy: a finished fold's logits are damaged", needle,
                       "without --resume")


def test_an_interrupted_fold_write_leaves_no_partial_file(teacher_dir, tmp_path, monkeypatch, capsys):
    real = np.save

    def interrupted(file, array, *args, **kwargs):
        if "crossfit-fold" not in str(getattr(file, "name", file)):
            return real(file, array, *args, **kwargs)
        if hasattr(file, "write"):
            file.write(b"\x93NUMPY")
        else:
            open(file, "wb").write(b"\x93NUMPY")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", interrupted)
    out = tmp_path / "a"
    code, _, _ = run_cli(capsys, *_early_crossfit(teacher_dir, out))
    assert code == 130
    assert not list(out.glob("*crossfit-fold*"))


# -- results databases ---------------------------------------------------------------------------------------------
def _results(path, change):
    from earlykd.bench.store import COLUMNS, Store
    store = Store(path / "results.db")
    for d in ("D0", "D1"):
        for method, e in (("teacher", 1.0), ("base", 0.5)):
            row = {c: None for c in COLUMNS}
            row.update(dataset=d, method=method, earliness=e, prefix_mode="truncate", seed=0, teacher_arch="lstm",
                       student_arch="lstm", auc_prc=0.8, average_precision=0.8, accuracy=0.8, roc_auc=0.9, nll=0.4,
                       ece=0.05, epochs=10, train_seconds=5.0, seconds_per_epoch=0.5, peak_memory_mb=500.0,
                       config_hash="c" * 12, version="0.1.0", options={}, job_hash=f"h{d}{method}", run_dir="runs/x",
                       finished_at="2026-01-01T00:00:00", record={"status": "finished"})
            if method != "teacher":
                row.update(fidelity_top1=0.9, fidelity_kl=0.1)
            assert store.insert(row)
    store.close()
    with sqlite3.connect(path / "results.db") as conn:
        conn.execute(change)
    return path


@pytest.mark.parametrize("change", ["UPDATE runs SET auc_prc = NULL",
                                    "UPDATE runs SET nll = NULL, ece = NULL",
                                    "UPDATE runs SET epochs = NULL, seconds_per_epoch = NULL"])
def test_a_report_shows_missing_metrics_as_empty(tmp_path, change, capsys):
    _results(tmp_path, change)
    code, _, err = run_cli(capsys, "report", tmp_path)
    assert code == 0, err
    teacher = (tmp_path / "tables" / "teacher.md").read_text()
    assert "| D0 | truncate | lstm |" in teacher and "| - |" in teacher


@pytest.mark.parametrize("change, needle", [("UPDATE runs SET auc_prc = 'abc'", "column auc_prc holds 'abc'"),
                                           ("UPDATE runs SET earliness = 'x' WHERE method = 'base'",
                                            "column earliness holds 'x'"),
                                           ("UPDATE runs SET nll = x'00ff'", "column nll")])
def test_a_report_refuses_text_in_a_numeric_column_and_writes_nothing(tmp_path, change, needle, capsys):
    _results(tmp_path, change)
    code, _, err = run_cli(capsys, "report", tmp_path)
    assert_clean_error(code, err, "results.db", needle, "not a number")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.db"]


# -- memory --------------------------------------------------------------------------------------------------------
def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))   # an allocation too large fails, whatever the host


@pytest.mark.parametrize("args", [["--hidden", "100000"], ["--length", "100000000"]])
def test_settings_too_large_for_memory_are_one_line_and_leave_no_run(tmp_path, args):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "earlykd", "teacher", *TINY, *args, "--epochs", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, preexec_fn=_limited)
    assert_clean_error(done.returncode, done.stderr, "out of memory", "lower")
    assert not out.exists()
