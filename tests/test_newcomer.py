"""Issue 12, the newcomer's path: each test failed before its fix."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from earlykd import api
from earlykd.data import load_raw

from conftest import TINY, assert_clean_error, run_cli

FAST = ["--epochs", "2", "--batch-size", "8", "--no-progress"]


def unit_test_npz(folder):
    raw = load_raw({"name": "UnitTest"})
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "train.npz", X=np.stack(raw.X_train), y=raw.y_train)
    np.savez(folder / "test.npz", X=np.stack(raw.X_test), y=raw.y_test)
    return folder / "train.npz", folder / "test.npz"


# -- 1: run directories are readable from anywhere, and after moving the project ------------------

def test_evaluate_from_another_directory_and_after_a_move(tmp_path, capsys, monkeypatch):
    project = tmp_path / "project"
    unit_test_npz(project / "data")
    monkeypatch.chdir(project)
    assert run_cli(capsys, "teacher", *TINY[2:], "--data", "data/train.npz", "--test-path", "data/test.npz",
                   "--out", "runs/t")[0] == 0
    assert run_cli(capsys, "distill", "--teacher", "runs/t", "--method", "kd", "--earliness", "0.5", *FAST,
                   "--out", "runs/kd")[0] == 0
    expected = json.loads((project / "runs/kd/metrics.json").read_text())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, _, err = run_cli(capsys, "evaluate", project / "runs/kd")
    assert code == 0, err
    moved = tmp_path / "moved"
    shutil.move(str(project), str(moved))
    code, _, err = run_cli(capsys, "evaluate", moved / "runs/kd", "--json")
    assert code == 0, err
    assert json.loads((moved / "runs/kd/metrics.json").read_text()) == pytest.approx(expected)
    for run, relative in (("t", {}), ("kd", {"teacher": "runs/t"})):  # as older versions stored them, as typed
        cfg = yaml.safe_load((moved / "runs" / run / "config.yaml").read_text())
        cfg["data"].update(name="data/train.npz", test_path="data/test.npz")
        cfg.update(out=f"runs/{run}", **relative)
        (moved / "runs" / run / "config.yaml").write_text(yaml.safe_dump(cfg))
    code, out, err = run_cli(capsys, "evaluate", moved / "runs/kd", "--json")
    assert code == 0 and json.loads(out) == pytest.approx(expected), err


# -- 2: predict reads a CSV as training does ---------------------------------------------------------

def test_predict_csv_drops_the_label_column_and_says_so(student_dir, tmp_path, capsys):
    X = np.stack([s[0] for s in load_raw({"name": "UnitTest"}).X_test[:4]])[:, :12]
    np.save(tmp_path / "x.npy", X)
    _, reference, _ = run_cli(capsys, "predict", student_dir, "--input", tmp_path / "x.npy")
    numeric = tmp_path / "numeric.csv"
    numeric.write_text("".join(f"{i % 2 + 1}," + ",".join(map(str, row)) + "\n" for i, row in enumerate(X)))
    code, out, err = run_cli(capsys, "predict", student_dir, "--input", numeric)
    assert code == 0 and out == reference, err
    assert "label column 0 (0-based)" in err and "12 value columns" in err
    text = tmp_path / "text.csv"
    text.write_text("label," + ",".join(f"t{i}" for i in range(12)) + "\n"
                    + "".join("one," + ",".join(map(str, row)) + "\n" for row in X))
    code, out, err = run_cli(capsys, "predict", student_dir, "--input", text)
    assert code == 0 and out == reference, err
    assert "header" in err
    bare = tmp_path / "bare.csv"
    bare.write_text("".join(",".join(map(str, row)) + "\n" for row in X))
    code, out, err = run_cli(capsys, "predict", student_dir, "--input", bare, "--label-column", "none")
    assert code == 0 and out == reference and "no label column" in err


# -- 3: an unreachable Ray address fails before Ray's own long wait ------------------------------------

def test_ray_unreachable_address_is_one_line(tmp_path, capsys, monkeypatch):
    ray = pytest.importorskip("ray")
    import socket
    calls = []
    monkeypatch.setattr(ray, "init", lambda *a, **k: calls.append(k) or (_ for _ in ()).throw(RuntimeError("x")))
    with socket.socket() as s:  # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run_cli(capsys, "bench", "--suite", "smoke", "--datasets", "UnitTest", "--methods", "base",
                           "--executor", "ray", "--address", f"127.0.0.1:{port}", "--out", tmp_path / "out")
    assert_clean_error(code, err, f"127.0.0.1:{port}", "refused")
    assert calls == [] and not (tmp_path / "out").exists()   # nothing made before the refusal


# -- 4: a non-UTF-8 CSV ------------------------------------------------------------------------------

def test_non_utf8_csv(tmp_path, capsys):
    bad = tmp_path / "latin.csv"
    bad.write_bytes("a,1,2,3\nb,4,5,6\n\xe9t\xe9,1,2,3\n".encode("latin-1"))
    code, _, err = run_cli(capsys, "teacher", "--data", bad, "--test-path", bad, *FAST, "--out", tmp_path / "o")
    assert_clean_error(code, err, "latin.csv", "UTF-8", "line 3")
    assert not (tmp_path / "o").exists()
    (tmp_path / "run.yaml").write_bytes("train: {epochs: 2}  # \xe9\n".encode("latin-1"))
    code, _, err = run_cli(capsys, "teacher", "--config", tmp_path / "run.yaml", "--out", tmp_path / "o")
    assert_clean_error(code, err, "run.yaml", "UTF-8")


# -- 5: no silent full-series student, no silent GunPoint -------------------------------------------

def test_earliness_and_data_are_required(teacher_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "distill", "--teacher", teacher_dir, *FAST, "--out", tmp_path / "s")
    assert_clean_error(code, err, "--earliness")
    code, _, err = run_cli(capsys, "compare", *TINY, "--out", tmp_path / "c")
    assert_clean_error(code, err, "--earliness")
    code, _, err = run_cli(capsys, "teacher", *TINY[2:], "--out", tmp_path / "t")
    assert_clean_error(code, err, "--data")
    assert not any((tmp_path / n).exists() for n in ("s", "c", "t"))


# -- 7: threads ---------------------------------------------------------------------------------------

def test_default_threads_do_not_oversubscribe(tmp_path, capsys, monkeypatch, student_dir):
    import torch

    from earlykd import threads
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "cores", lambda: 2)
    torch.set_num_threads(2)  # what torch picks by itself on two cores
    try:
        assert run_cli(capsys, "teacher", *TINY, "--out", tmp_path / "t")[0] == 0
        assert json.loads((tmp_path / "t/run.json").read_text())["threads"] == threads.default_threads() == 1
        assert run_cli(capsys, "evaluate", student_dir, "--threads", "1")[0] == 0
        np.save(tmp_path / "x.npy", np.zeros((2, 12)))
        assert run_cli(capsys, "predict", student_dir, "--input", tmp_path / "x.npy", "--threads", "1")[0] == 0
        assert api.evaluate(student_dir, threads=1) and api.predict(student_dir, np.zeros((2, 12)), threads=1)
    finally:
        torch.set_num_threads(before)


# -- 8: logs off a terminal ---------------------------------------------------------------------------

def test_progress_off_a_terminal_is_a_few_plain_lines(tmp_path, capsys):
    args = [a for a in TINY if a != "--no-progress"]
    code, _, err = run_cli(capsys, "teacher", *args, "--epochs", "40", "--out", tmp_path / "t")
    assert code == 0
    lines = err.splitlines()
    assert "\r" not in err and lines, err
    per_model = {}
    for line in lines:  # "<what>: epoch n/40  ce ...": at most ten lines per model fitted
        per_model.setdefault(line.split(": epoch ")[0], []).append(line)
    assert all(len(found) <= 10 for found in per_model.values()), err
    assert any(line.startswith("teacher UnitTest lstm: epoch 40/40") for line in lines), err


# -- 9: a saved config reproduces its run with only --out ---------------------------------------------

def test_saved_config_reproduces_the_run(student_dir, teacher_dir, tmp_path, capsys):
    saved = yaml.safe_load((teacher_dir / "config.yaml").read_text())
    assert saved["model"] == {"arch": "lstm", "layers": 1, "hidden": 8}
    code, _, err = run_cli(capsys, "teacher", "--config", teacher_dir / "config.yaml", "--out", tmp_path / "t2")
    assert code == 0, err
    assert json.loads((tmp_path / "t2/metrics.json").read_text()) == json.loads((teacher_dir / "metrics.json").read_text())
    code, _, err = run_cli(capsys, "distill", "--config", student_dir / "config.yaml", "--out", tmp_path / "s2")
    assert code == 0, err
    assert json.loads((tmp_path / "s2/metrics.json").read_text()) == json.loads((student_dir / "metrics.json").read_text())


def test_a_flag_and_a_set_of_the_same_key_conflict(tmp_path, capsys):
    code, _, err = run_cli(capsys, "teacher", *TINY, "--epochs", "1", "--set", "train.epochs=2", "--out", tmp_path / "t")
    assert_clean_error(code, err, "train.epochs", "--epochs 1", "--set train.epochs=2")
    assert not (tmp_path / "t").exists()


# -- 10: single-seed tables come with the seed spread ------------------------------------------------

def test_compare_over_seeds_shows_the_spread(tmp_path, capsys):
    code, out, err = run_cli(capsys, "compare", *TINY, "--earliness", "0.5", "--methods", "base", "kd",
                             "--seeds", "0,1", "--out", tmp_path / "cmp")
    assert code == 0, err
    header = out.splitlines()[0].split()
    assert "auc_prc_sd" in header and "seeds" in header
    assert out.splitlines()[2].split()[:3] == ["teacher", "1.0000", "1"]
    rows = {r.split()[0]: r.split() for r in out.splitlines()[3:5]}
    assert set(rows) == {"base", "kd"} and all(r[header.index("seeds")] == "2" for r in rows.values())
    assert (tmp_path / "cmp/kd-s1/run.json").is_file()


# -- small inconsistencies ------------------------------------------------------------------------------

def test_cli_parser_does_not_import_torch():
    code = "import sys; from earlykd import cli; cli._parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_help_shows_defaults_and_methods_fit_a_terminal(capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, "teacher", "--help")
    text = capsys.readouterr().out
    assert "default 100" in text and "default 64" in text and "default 0.001" in text and "cuda:N" in text
    code, out, _ = run_cli(capsys, "methods")
    assert code == 0 and max(map(len, out.splitlines())) <= 100


def test_outputs_written_lines_and_file_modes(student_dir, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 12)))
    code, out, err = run_cli(capsys, "predict", student_dir, "--input", tmp_path / "x.npy", "--output", tmp_path / "p.json")
    assert code == 0 and out == "" and "written:" in err
    rows = json.loads((tmp_path / "p.json").read_text())
    assert len(rows) == 2 and set(rows[0]) == {"row", "label", "p_1", "p_2"}
    code, out, err = run_cli(capsys, "evaluate", student_dir)
    assert "written:" in err and "written:" not in out
    modes = {p.name: p.stat().st_mode & 0o777 for p in student_dir.iterdir() if p.suffix in (".json", ".yaml")}
    assert len(set(modes.values())) == 1, modes
    private = tmp_path / "private.json"   # a file replaced keeps its mode: a private one stays private
    private.write_text("[]")
    private.chmod(0o600)
    assert run_cli(capsys, "predict", student_dir, "--input", tmp_path / "x.npy", "--output", private)[0] == 0
    assert private.stat().st_mode & 0o777 == 0o600 and len(json.loads(private.read_text())) == 2


# -- small features -----------------------------------------------------------------------------------

def test_evaluate_json_and_test_path(student_dir, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "evaluate", student_dir, "--json")
    metrics = json.loads(out)
    assert code == 0 and metrics == pytest.approx(json.loads((student_dir / "metrics.json").read_text()))
    _, test = unit_test_npz(tmp_path)
    before = (student_dir / "metrics.json").read_bytes()
    code, out, err = run_cli(capsys, "evaluate", student_dir, "--test-path", test, "--json")
    assert code == 0, err
    assert json.loads(out) == pytest.approx(metrics)  # the same cases as the test split
    assert (student_dir / "metrics.json").read_bytes() == before
    bad = tmp_path / "unlabelled.npz"
    np.savez(bad, X=np.zeros((3, 24)))
    code, _, err = run_cli(capsys, "evaluate", student_dir, "--test-path", bad)
    assert_clean_error(code, err, "unlabelled.npz", "no labels")


def test_evaluate_json_is_strict_json_with_null_for_an_undefined_metric(student_dir, capsys, monkeypatch):
    from earlykd import runs
    monkeypatch.setattr(runs, "evaluate_run", lambda *a, **k: {"accuracy": 1.0, "auc_prc": float("nan"),
                                                                "test_levels": {"0.5": {"nll": float("inf")}}})
    code, out, _ = run_cli(capsys, "evaluate", student_dir, "--json")
    strict = json.loads(out, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    assert code == 0 and strict == {"accuracy": 1.0, "auc_prc": None, "test_levels": {"0.5": {"nll": None}}}


def test_model_card_in_every_run_directory(teacher_dir, student_dir):
    teacher = (teacher_dir / "model_card.md").read_text()
    student = (student_dir / "model_card.md").read_text()
    for heading in ("## Data", "## Earliness", "## Metrics", "## Teacher", "## Intended use"):
        assert heading in student
    assert "ece" in student and "validation" in student.lower() and str(teacher_dir) in student
    assert "full series" in teacher and "UnitTest" in teacher
    cv = json.loads((teacher_dir / "run.json").read_text())["cv"]   # the default: epochs by cross-validation
    assert f"chosen by {cv['folds']}-fold stratified cross-validation" in teacher and "refit" in teacher
    assert "selected on validation" not in teacher and "pooled for" in teacher


def test_bench_on_a_suite_file_and_user_files(tmp_path, capsys):
    train, test = unit_test_npz(tmp_path / "data")
    suite = tmp_path / "mine.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "mine", "datasets": ["UnitTest", {"name": str(train), "test_path": str(test)}],
        "methods": ["base"], "earliness": [0.5], "seeds": [0],
        "common": {"model": {"arch": "lstm", "layers": 1, "hidden": 8}, "data": {"length": 32},
                   "train": {"batch_size": 8, "epochs": 2}}}))
    code, out, err = run_cli(capsys, "bench", "--suite", suite, "--workers", "0", "--no-progress",
                             "--out", tmp_path / "sweep")
    assert code == 0, err
    assert "4 runs: 4 trained" in out
    import sqlite3
    with sqlite3.connect(tmp_path / "sweep/results.db") as conn:
        assert sorted(r[0] for r in conn.execute("SELECT DISTINCT dataset FROM runs")) == ["UnitTest", "train"]
    suite.write_text("name: bad\ndatasets: [UnitTest]\nmethod: [base]\n")
    code, _, err = run_cli(capsys, "bench", "--suite", suite, "--out", tmp_path / "bad")
    assert_clean_error(code, err, "mine.yaml", "method", "methods")
