"""End-to-end CLI runs on tiny settings."""
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from earlykd import cli
from earlykd.data import load_raw

from conftest import TINY, run_cli

SUBCOMMANDS = ["datasets", "methods", "teacher", "distill", "compare", "evaluate", "predict"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: earlykd " + command in capsys.readouterr().out


@pytest.mark.parametrize("args, needle", [(["bogus"], "invalid choice: 'bogus'"),
                                          (["early", "--teacher", "t", "--sampling", "ARIA"], "invalid choice: 'ARIA'"),
                                          (["teacher", "--epochs", "x"], "invalid int value: 'x'"),
                                          (["teacher", "--epochz", "3"],
                                           "unrecognized arguments: --epochz 3 (see earlykd teacher --help)"),
                                          (["evaluate", "r1", "r2"], "unrecognized arguments: r2 (see earlykd evaluate")])
def test_a_usage_error_is_one_line_and_exit_2(args, needle, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith("earlykd: error: ") and needle in err


def test_a_reader_that_stops_early_ends_the_output_quietly():
    """`earlykd methods | head -1`: no traceback when the pipe closes."""
    run = subprocess.Popen([sys.executable, "-m", "earlykd", "methods"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run.stdout.close()
    assert run.stderr.read() == b"" and run.wait() == 141


def test_datasets_lists_bundled(capsys):
    code, out, _ = run_cli(capsys, "datasets")
    assert code == 0
    line = next(row for row in out.splitlines() if row.startswith("GunPoint "))
    assert line.split()[1:] == ["50", "150", "1", "150", "2"]
    assert any(row.startswith("JapaneseVowels ") and "-" in row.split()[4] for row in out.splitlines())


def test_methods_generated_from_registry(capsys):
    from earlykd.distill import METHODS
    code, out, _ = run_cli(capsys, "methods")
    assert code == 0
    assert {row.split()[0] for row in out.splitlines()[2:] if not row.startswith(" ")} == set(METHODS)


def test_teacher_run_directory(teacher_dir):
    saved = yaml.safe_load((teacher_dir / "config.yaml").read_text())
    assert saved["data"]["name"] == "UnitTest" and saved["model"]["hidden"] == 8
    record = json.loads((teacher_dir / "run.json").read_text())
    for key in ("config_hash", "versions", "seed", "train_seconds", "seconds_per_epoch", "test", "val", "history"):
        assert key in record
    assert record["versions"]["torch"] and record["kind"] == "teacher"
    assert json.loads((teacher_dir / "metrics.json").read_text()) == record["test"]


def test_distill_evaluate_predict(student_dir, teacher_dir, tmp_path, capsys):
    record = json.loads((student_dir / "run.json").read_text())
    assert record["method"] == "kd" and record["earliness"] == 0.5 and "fidelity_top1" in record["test"]
    code, out, _ = run_cli(capsys, "evaluate", student_dir)
    assert code == 0 and "auc_prc" in out
    assert json.loads((student_dir / "metrics.json").read_text()) == pytest.approx(record["test"])
    raw = load_raw({"name": "UnitTest"})
    X = np.stack([s[0] for s in raw.X_test[:4]])
    np.save(tmp_path / "full.npy", X)
    np.save(tmp_path / "partial.npy", X[:, :12])
    code, full_out, err = run_cli(capsys, "predict", student_dir, "--input", tmp_path / "full.npy", "--full")
    rows = [r.split(",") for r in full_out.strip().splitlines()]
    assert code == 0 and rows[0] == ["row", "label", "p_1", "p_2"] and len(rows) == 5 and err == ""
    assert all(abs(float(r[2]) + float(r[3]) - 1) < 1e-5 for r in rows[1:])
    code, out, err = run_cli(capsys, "predict", student_dir, "--input", tmp_path / "partial.npy",
                             "--output", tmp_path / "pred.csv")
    assert code == 0 and (tmp_path / "pred.csv").read_text().count("\n") == 5 and "warning" not in err
    # a whole series and its 12-sample prefix are the same input to a student at e = 0.5 of 24 samples
    assert (tmp_path / "pred.csv").read_text() == full_out
    code, _, err = run_cli(capsys, "predict", student_dir, "--input", tmp_path / "full.npy")
    assert code == 0 and "4 row(s) are longer than the trained prefix of 12 samples" in err
    np.save(tmp_path / "short.npy", X[:, :5])
    code, _, err = run_cli(capsys, "predict", student_dir, "--input", tmp_path / "short.npy")
    assert code == 0 and "4 row(s) have fewer samples than the trained prefix (12)" in err
    code, _, err = run_cli(capsys, "predict", teacher_dir, "--input", tmp_path / "partial.npy")
    assert code == 0 and "fewer samples than a whole series (24); " in err and "meant for whole series" in err
    (tmp_path / "rows.csv").write_text("\n".join(",".join(map(str, r)) for r in X[:, :12]) + "\n")
    code, out, _ = run_cli(capsys, "predict", student_dir, "--input", tmp_path / "rows.csv", "--label-column", "none")
    assert code == 0 and out.count("\n") == 5


def test_config_file_and_set_overrides(tmp_path, capsys, teacher_dir):
    conf = tmp_path / "c.yaml"
    conf.write_text("train: {epochs: 5, batch_size: 4}\nmethod: {options: {temperature: 4}}\n")
    out = tmp_path / "s"
    code, _, err = run_cli(capsys, "distill", "--teacher", teacher_dir, "--method", "kd", "--earliness", "0.25",
                           "--config", conf, "--set", "train.epochs=2", "--set", "prefix.mode=truncate",
                           "--no-progress", "--out", out)
    assert code == 0, err
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 2 and saved["train"]["batch_size"] == 4
    assert saved["method"]["options"] == {"temperature": 4} and saved["prefix"]["mode"] == "truncate"
    assert json.loads((out / "run.json").read_text())["epochs"] == 2


def test_compare_prints_one_table(tmp_path, capsys):
    code, out, err = run_cli(capsys, "compare", *TINY, "--earliness", "0.5", "--methods", "base,kd",
                             "--out", tmp_path / "cmp")
    assert code == 0, err
    header = out.splitlines()[0].split()
    assert header[:4] == ["run", "method", "earliness", "auc_prc"] and "seconds_per_epoch" in header
    assert [r.split()[1] for r in out.splitlines()[2:5]] == ["teacher", "base", "kd"]
    assert "run directory:" in out


def test_compare_select_is_the_teachers_rule(tmp_path, capsys):
    code, _, err = run_cli(capsys, "compare", *TINY, "--earliness", "0.5", "--methods", "kd", "--set",
                           "train.select=acc_loss", "--out", tmp_path / "cmp")
    assert code == 0, err
    teacher = yaml.safe_load((tmp_path / "cmp" / "teacher" / "config.yaml").read_text())
    student = yaml.safe_load((tmp_path / "cmp" / "kd" / "config.yaml").read_text())
    assert teacher["train"]["select"] == "acc_loss" and student["train"]["select"] == "loss"


def test_real_process_exit_codes(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "earlykd.cli", "methods"], capture_output=True, text=True)
    assert ok.returncode == 0 and "kd " in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "earlykd.cli", "teacher", "--data", "NoSuchSet", "--out",
                          str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "earlykd: error: unknown dataset 'NoSuchSet' (bundled: " + bad.stderr.split("(bundled: ")[1].strip()
    assert not (tmp_path / "x").exists()


def test_readme_method_table_matches_registry():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("<!-- methods:start")
    table = readme[readme.index("\n", start) + 1:readme.index("<!-- methods:end -->")].strip()
    assert table == cli.methods_markdown()


def test_channel_subset_student_predicts_from_all_or_its_channels(tmp_path, capsys):
    small = ["--length", "32", "--arch", "fcn", "--layers", "1", "--hidden", "8", "--epochs", "1", "--no-progress"]
    assert run_cli(capsys, "teacher", "--data", "BasicMotions", *small, "--out", tmp_path / "t")[0] == 0
    code, _, err = run_cli(capsys, "distill", "--teacher", tmp_path / "t", "--method", "kd", "--earliness", "0.5",
                           "--channels", "0,2,4", *small[-3:], "--out", tmp_path / "s")
    assert code == 0, err
    X = np.stack(load_raw({"name": "BasicMotions"}).X_test[:3])[:, :, :50]
    np.save(tmp_path / "all.npy", X)
    np.save(tmp_path / "subset.npy", X[:, [0, 2, 4]])
    outputs = [run_cli(capsys, "predict", tmp_path / "s", "--input", tmp_path / f"{n}.npy") for n in ("all", "subset")]
    assert outputs[0][0] == outputs[1][0] == 0 and outputs[0][1] == outputs[1][1]
    np.save(tmp_path / "two.npy", X[:, :2])
    code, _, err = run_cli(capsys, "predict", tmp_path / "s", "--input", tmp_path / "two.npy")
    assert code == 2 and "expects 6 or 3" in err
    # a row as far as it has arrived may hold a channel not begun yet: an answer, not an error
    unused = X.copy()
    unused[:, 1] = np.nan   # a channel the student does not read changes nothing
    np.save(tmp_path / "unused.npy", unused)
    assert run_cli(capsys, "predict", tmp_path / "s", "--input", tmp_path / "unused.npy")[:2] == outputs[0][:2]
    late = X.copy()
    late[:, 2, :20] = np.nan
    np.save(tmp_path / "late.npy", late)
    code, out, err = run_cli(capsys, "predict", tmp_path / "s", "--input", tmp_path / "late.npy")
    assert code == 0 and out.count("\n") == 4, err
    np.save(tmp_path / "none.npy", np.full_like(X, np.nan))
    code, _, err = run_cli(capsys, "predict", tmp_path / "s", "--input", tmp_path / "none.npy")
    assert code == 2 and "row 1: series is all NaN" in err
