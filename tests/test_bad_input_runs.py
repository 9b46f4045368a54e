"""Bad input around finished runs: output paths that must not be replaced, damaged run directories and
checkpoints, devices, resumes, streams and the estimator's settings. Each is one line and exit 2 (or an
EarlykdError), and nothing the user had is overwritten."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, run_cli
from safetensors.torch import load_file, save_file

from earlykd import EarlyClassifier
from earlykd.early.estimator import EarlyInputError
from earlykd.errors import EarlykdError


def _damage_checkpoint(run, change):
    """Rewrite run/model.safetensors with change(tensors, metadata) applied."""
    from safetensors import safe_open
    path = run / "model.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata())
    tensors = load_file(str(path))
    change(tensors, meta)
    save_file(tensors, str(path), metadata=meta)


# -- outputs the user names ---------------------------------------------------------------------------------------
def test_predict_output_never_replaces_a_pipe_or_a_runs_file_and_writes_through_a_link(
        student_copy, series_file, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, _, err = run_cli(capsys, "predict", student_copy, "--input", series_file, "--output", fifo)
    assert_clean_error(code, err, "not a regular file")
    assert fifo.is_fifo()
    before = (student_copy / "model.safetensors").read_bytes()
    code, _, err = run_cli(capsys, "predict", student_copy, "--input", series_file, "--output",
                           student_copy / "model.safetensors")
    assert_clean_error(code, err, "is a file of the run directory")
    assert (student_copy / "model.safetensors").read_bytes() == before
    target, link = tmp_path / "target.csv", tmp_path / "link.csv"
    target.write_text("old")
    link.symlink_to(target)
    code, _, err = run_cli(capsys, "predict", student_copy, "--input", series_file, "--output", link)
    assert code == 0, err
    assert link.is_symlink() and target.read_text().startswith("row,label")


def test_export_refuses_a_sidecar_that_is_its_model_or_a_folder_and_replaces_nothing(student_copy, tmp_path, capsys):
    pytest.importorskip("onnx")
    code, _, err = run_cli(capsys, "export", student_copy, "--out", tmp_path / "m.json")
    assert_clean_error(code, err, "sidecar")
    code, _, err = run_cli(capsys, "export", student_copy, "--out", student_copy / "model.safetensors")
    assert_clean_error(code, err, "is a file of the run directory")
    (tmp_path / "m.onnx").write_text("old model")
    (tmp_path / "m.json").mkdir()
    code, _, err = run_cli(capsys, "export", student_copy, "--out", tmp_path / "m.onnx")
    assert_clean_error(code, err, "not a regular file")
    assert (tmp_path / "m.onnx").read_text() == "old model"


def test_evaluate_with_a_folder_where_metrics_go_is_one_line(student_copy, capsys):
    (student_copy / "metrics.json").unlink()
    (student_copy / "metrics.json").mkdir()
    code, _, err = run_cli(capsys, "evaluate", student_copy)
    assert_clean_error(code, err, "metrics.json", "not a regular file")


# -- run directories and checkpoints ------------------------------------------------------------------------------
@pytest.mark.parametrize("record", ["[]", "{}"])
def test_a_damaged_run_record_is_one_line(student_copy, series_file, record, capsys):
    (student_copy / "run.json").write_text(record)
    code, _, err = run_cli(capsys, "evaluate", student_copy)
    assert_clean_error(code, err, "run.json", "not an earlykd run record")


@pytest.mark.parametrize("config", ["", "data: 5\n", "a: [\n  b"])
def test_a_damaged_run_config_is_one_line(student_copy, series_file, config, capsys):
    (student_copy / "config.yaml").write_text(config)
    code, _, err = run_cli(capsys, "predict", student_copy, "--input", series_file)
    assert_clean_error(code, err, str(student_copy))


@pytest.mark.parametrize("change, needle", [
    (lambda t, m: m.pop("meta"), "metadata missing or unreadable"),
    (lambda t, m: m.update(meta="{bad"), "metadata missing or unreadable"),
    (lambda t, m: t.update({k: torch.zeros(3, 3) for k in list(t) if k.endswith("head.weight")}),
     "has shape (3, 3)"),
    (lambda t, m: t.update({k: v * float("nan") for k, v in t.items() if k.startswith("model.")}), "NaN"),
    (lambda t, m: t.update({"data.std": torch.zeros_like(t["data.std"])}), "training statistics"),
])
def test_a_damaged_checkpoint_is_one_line_naming_what_is_wrong(student_copy, series_file, change, needle, capsys):
    _damage_checkpoint(student_copy, change)
    code, _, err = run_cli(capsys, "predict", student_copy, "--input", series_file)
    assert_clean_error(code, err, "model.safetensors", needle)


def test_unknown_devices_are_refused_by_evaluate_and_predict(student_dir, series_file, capsys):
    code, _, err = run_cli(capsys, "evaluate", student_dir, "--device", "tpu")
    assert_clean_error(code, err, "device must be auto, cpu, cuda or cuda:N")
    code, _, err = run_cli(capsys, "predict", student_dir, "--input", series_file, "--device", "tpu")
    assert_clean_error(code, err, "device must be auto, cpu, cuda or cuda:N")


def test_a_refused_resume_leaves_the_interrupted_runs_config_as_it_was(teacher_dir, tmp_path, monkeypatch, capsys):
    from conftest import interrupt_at
    out = tmp_path / "x"
    undo = interrupt_at(monkeypatch, 2)
    code, _, _ = run_cli(capsys, "distill", "--teacher", teacher_dir, "--method", "kd", "--earliness", "0.5",
                         "--epochs", "4", "--batch-size", "8", "--no-progress", "--set", "train.checkpoint_every=1",
                         "--out", out)
    undo()
    assert code != 0 and (out / "last.safetensors").is_file()
    before = (out / "config.yaml").read_text()
    code, _, err = run_cli(capsys, "distill", "--teacher", teacher_dir, "--method", "base", "--earliness", "0.5",
                           "--epochs", "7", "--batch-size", "8", "--no-progress", "--set", "train.checkpoint_every=1",
                           "--resume", "--out", out)
    assert_clean_error(code, err, "started with other settings", "method.name kd -> base")
    # the same architecture and method with another prefix and budget: refused too (it used to continue the
    # weights trained on the old prefixes and record the new settings as if they had been used)
    code, _, err = run_cli(capsys, "distill", "--teacher", teacher_dir, "--method", "kd", "--earliness", "0.4",
                           "--epochs", "7", "--batch-size", "8", "--no-progress", "--set", "train.checkpoint_every=1",
                           "--resume", "--out", out)
    assert_clean_error(code, err, "prefix.earliness 0.5 -> 0.4", "train.epochs 4 -> 7")
    assert (out / "config.yaml").read_text() == before
    code, _, err = run_cli(capsys, "distill", "--teacher", teacher_dir, "--method", "kd", "--earliness", "0.5",
                           "--epochs", "4", "--batch-size", "8", "--no-progress", "--set", "train.checkpoint_every=1",
                           "--threads", "1", "--resume", "--out", out)
    assert code == 0, err   # how it runs may change


def test_probabilities_that_are_not_finite_are_one_line():
    from earlykd.evaluate import classification_metrics
    with pytest.raises(EarlykdError, match="not finite"):
        classification_metrics(np.full((3, 2), np.nan), np.array([0, 1, 0]))


# -- anytime runs: stored policies and streams ----------------------------------------------------------------------
def test_a_misspelt_policy_gets_close_matches_and_a_damaged_decide_file_one_line(anytime_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "predict", anytime_dir, "--stream", "--policy", "thresold")
    assert_clean_error(code, err, "did you mean threshold")
    copy = shutil.copytree(anytime_dir, tmp_path / "a")
    (copy / "decide.json").write_text("[]")
    with pytest.raises(EarlykdError, match="not a stored set of policies"):
        EarlyClassifier.from_run(copy)


def test_a_stream_with_a_byte_that_is_not_utf8_names_its_line(anytime_dir, tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"a,1\n\xff\xfe,2\n")
    for kind in ("file", "stdin"):
        args = [sys.executable, "-m", "earlykd", "predict", str(anytime_dir), "--stream"]
        done = subprocess.run(args + (["--input", str(path)] if kind == "file" else []), capture_output=True,
                              input=None if kind == "file" else path.read_bytes())
        lines = done.stderr.decode().strip().splitlines()
        assert done.returncode == 2 and lines == [lines[0]] and "line 2: not UTF-8 text" in lines[0], done.stderr


# -- the estimator --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("setting", [{"epochs": 0}, {"epochs": "abc"}, {"batch_size": 0}, {"length": 0},
                                     {"teacher_epochs": -1}, {"val_fraction": 1.5}, {"device": "tpu"}])
def test_the_estimators_bad_settings_are_one_line(setting):
    X, y = np.random.default_rng(0).standard_normal((12, 1, 16)), np.array(["a", "b"] * 6)
    with pytest.raises(EarlyInputError, match=list(setting)[0] if list(setting)[0] != "device" else "device"):
        EarlyClassifier(**setting).fit(X, y)


def test_the_estimator_refuses_infinite_or_empty_series_shrinking_updates_and_unknown_labels(anytime_dir):
    est = EarlyClassifier.from_run(anytime_dir)
    X = np.random.default_rng(0).standard_normal((3, 1, 24))
    with pytest.raises(EarlyInputError, match="X: case 1: infinite value"):
        est.predict(np.where(np.arange(3)[:, None, None] == 1, np.inf, X))
    with pytest.raises(EarlyInputError, match="X: case 2: value -1e\\+300 is beyond float32's range"):
        est.predict(np.where(np.arange(3)[:, None, None] == 2, -1e300, X))
    with pytest.raises(EarlyInputError, match="case 0 is all NaN"):
        est.predict(np.where(np.arange(3)[:, None, None] == 0, np.nan, X))
    decider = est.decider_
    state = decider.start(1)
    decider.advance(state, [X[0][..., :13]])   # past the first checkpoint (12 samples)
    state["stop"][:] = -1                       # still open, whatever the policy said
    with pytest.raises(EarlykdError, match="a series of 4 samples is shorter than the 12"):
        decider.advance(state, [X[0][..., :4]])
    with pytest.raises(EarlyInputError, match="not fitted on: z"):
        est.score(X, np.array(["z"] * 3))
    est.predict(X)   # every case decided at its whole series: nothing left to update
    for update in (est.update_predict, est.update_predict_proba):
        with pytest.raises(EarlyInputError, match="update_predict got no cases"):
            update(X[:0])


def test_the_api_takes_one_set_string_as_one_override():
    from earlykd.api import make_config
    assert make_config(sets="train.epochs=3")["train"]["epochs"] == 3
    with pytest.raises(EarlykdError, match="--set expects key=value, got 'epochs'"):
        make_config(sets=["epochs"])


def test_a_refused_resume_of_an_anytime_run_leaves_its_config_as_it_was(teacher_dir, tmp_path, monkeypatch, capsys):
    from conftest import interrupt_at
    out = tmp_path / "a"
    base = ["early", "--teacher", teacher_dir, "--levels", "0.5", "--epochs", "4", "--batch-size", "8",
            "--no-progress", "--set", "train.checkpoint_every=1", "--out", out]
    undo = interrupt_at(monkeypatch, 2)
    code, _, _ = run_cli(capsys, *base, "--method", "kd")
    undo()
    assert code != 0 and (out / "last.safetensors").is_file()
    before = (out / "config.yaml").read_text()
    code, _, err = run_cli(capsys, *base, "--method", "base", "--resume")
    assert_clean_error(code, err, "started with other settings", "method.name kd -> base")
    assert (out / "config.yaml").read_text() == before
    code, _, err = run_cli(capsys, *base, "--method", "kd", "--resume")
    assert code == 0, err


def test_predict_never_writes_over_its_input(student_dir, series_file, capsys):
    before = series_file.read_bytes()
    code, _, err = run_cli(capsys, "predict", student_dir, "--input", series_file, "--output", series_file)
    assert_clean_error(code, err, "is the input file")
    assert series_file.read_bytes() == before


def test_damaged_run_files_are_named(student_copy, series_file, capsys):
    (student_copy / "config.yaml").write_text("a: [\n  b")
    code, _, err = run_cli(capsys, "predict", student_copy, "--input", series_file)
    assert_clean_error(code, err, "config.yaml: unreadable")


def test_a_checkpoint_whose_model_description_is_damaged_is_named(student_copy, series_file, capsys):
    def bad_width(tensors, meta):
        spec = json.loads(meta["meta"])
        spec["model"]["hidden"] = "x"
        meta["meta"] = json.dumps(spec)
    _damage_checkpoint(student_copy, bad_width)
    code, _, err = run_cli(capsys, "predict", student_copy, "--input", series_file)
    assert_clean_error(code, err, "model.safetensors: its model description is damaged")
    (student_copy / "model.safetensors").unlink()
    (student_copy / "model.safetensors").mkdir()
    code, _, err = run_cli(capsys, "predict", student_copy, "--input", series_file)
    assert_clean_error(code, err, "model.safetensors: is not a file")


def test_a_series_decides_only_once_it_holds_a_value(anytime_dir, tmp_path, capsys):
    from earlykd.early.run import load_decider
    decider = load_decider(anytime_dir)
    lines = ["series,value"] + ["gaps,nan"] * 30   # past the last checkpoint, and more lines after it
    (tmp_path / "gaps.csv").write_text("\n".join(lines) + "\n")
    code, out, err = run_cli(capsys, "predict", anytime_dir, "--stream", "--input", tmp_path / "gaps.csv")
    assert code == 0 and out.strip().count("\n") == 0 and "1 undecided when the input ended (gaps)" in err
    late = np.r_[np.full(int(decider.samples[0]), np.nan), np.ones(24 - int(decider.samples[0]))][None]
    state = decider.start(1)
    decider.advance(state, [late])
    assert state["stop"][0] >= 1   # its first checkpoint held no observed sample


def test_scores_count_the_decisions_predict_makes_on_series_with_leading_gaps(anytime_dir, tmp_path):
    """A case decides nothing before it holds a value, in batch scoring (evaluate, calibration) as in predict and
    streams: evaluate --test-path equals the accuracy and earliness of predict's decisions, for every policy."""
    from earlykd.data import load_raw
    from earlykd.early.assess import decide_rows, evaluate_anytime, stored_policies
    from earlykd.early.run import load_decider
    raw = load_raw({"name": "UnitTest"})
    X, labels = np.stack(raw.X_test).astype(float), np.asarray(raw.y_test)
    X[::2, :, :12] = np.nan   # every other series starts half-way through
    path = tmp_path / "gaps.npz"
    np.savez(path, X=X, y=labels)
    scores = evaluate_anytime(anytime_dir, test_path=path)["test_policies"]
    for name in stored_policies(anytime_dir):
        rows = decide_rows(load_decider(anytime_dir, name), list(X))
        assert all(r["decided"] for r in rows)
        assert min(r["samples"] for r in rows[::2]) > 12   # nothing decided before a value arrived
        accuracy = np.mean([r["label"] == str(y) for r, y in zip(rows, labels)])
        assert scores[name]["accuracy"] == pytest.approx(accuracy, abs=1e-12), name
        assert scores[name]["earliness"] == pytest.approx(np.mean([r["earliness"] for r in rows]), abs=1e-12), name


def test_evaluating_a_file_of_short_series_warns_as_predict_does(student_dir, anytime_dir, tmp_path, capsys):
    from earlykd.data import load_raw
    raw = load_raw({"name": "UnitTest"})
    path = tmp_path / "short.npz"
    np.savez(path, X=np.stack(raw.X_test)[..., :10], y=np.asarray(raw.y_test))
    for run in (student_dir, anytime_dir):
        code, _, err = run_cli(capsys, "evaluate", run, "--test-path", path)
        assert code == 0 and "earlykd: warning:" in err and "held at its last value" in err, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_that_is_not_there_makes_no_run_directory(teacher_dir, tmp_path, capsys):
    commands = {"teacher": ["teacher", "--data", "UnitTest", "--epochs", "1"],
                "ensemble": ["teacher", "--data", "UnitTest", "--epochs", "1", "--ensemble", "2"],
                "distill": ["distill", "--teacher", teacher_dir, "--method", "kd", "--earliness", "0.5"],
                "early": ["early", "--teacher", teacher_dir, "--epochs", "1"]}
    for name, args in commands.items():
        code, _, err = run_cli(capsys, *args, "--device", "cuda", "--out", tmp_path / name)
        assert_clean_error(code, err, "CUDA is not available")
        assert not (tmp_path / name).exists(), name


def test_a_channel_outside_the_data_makes_no_run_directory(teacher_dir, tmp_path, capsys):
    for name, args in {"distill": ["distill", "--teacher", teacher_dir, "--method", "kd", "--earliness", "0.5"],
                       "early": ["early", "--teacher", teacher_dir, "--epochs", "1"]}.items():
        code, _, err = run_cli(capsys, *args, "--set", "prefix.channels=[0,6]", "--out", tmp_path / name)
        assert_clean_error(code, err, "channel subset [0, 6] is not within 0..0")
        assert not (tmp_path / name).exists(), name


def test_settings_refused_by_the_method_or_sampling_make_no_run_directory(teacher_dir, tmp_path, capsys):
    from conftest import TINY
    plain = tmp_path / "plain"   # selected on validation: no out-of-fold logits
    assert run_cli(capsys, "teacher", *TINY, "--select", "acc_loss", "--out", plain)[0] == 0
    cases = {"head": (["early", teacher_dir, "--method", "gdpd", "--option", "teacher_head=1"], "teacher_head = 1"),
             "aria": (["early", teacher_dir, "--sampling", "aria", "--set", "early.crossfit=2"], "early.crossfit needs"),
             "oof": (["distill", plain, "--method", "dlf", "--option", "oof=1", "--earliness", "0.5"], "out-of-fold")}
    for name, (args, needle) in cases.items():
        code, _, err = run_cli(capsys, args[0], "--teacher", *args[1:], "--epochs", "1", "--out", tmp_path / name)
        assert_clean_error(code, err, needle)
        assert not (tmp_path / name).exists(), name


def test_an_empty_output_name_is_refused_not_ignored(student_dir, series_file, capsys):
    for args in (["predict", student_dir, "--input", series_file, "--output", ""],
                 ["export", student_dir, "--format", "onnx", "--out", ""]):
        code, out, err = run_cli(capsys, *args)
        assert_clean_error(code, err, "output file's name is empty")
        assert out == ""
