"""Every bad input: exit code 2, one line naming the problem, no traceback, nothing overwritten."""
import json

import numpy as np
import pytest
import torch

from earlykd.errors import EarlykdError
from conftest import TINY, assert_clean_error, interrupt_at, run_cli

KD = ["--method", "kd", "--earliness", "0.5", "--epochs", "1", "--no-progress"]


def write_csv(path, rows):
    path.write_text("".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return path


@pytest.fixture
def good_csv(tmp_path):
    rows = [[label] + list(np.round(np.random.default_rng(i).normal(size=8), 3)) for i, label in
            enumerate(["a", "b"] * 6)]
    return write_csv(tmp_path / "good.csv", rows)


def teacher_args(tmp_path, data, *extra):
    return ["teacher", "--data", data, *extra, "--epochs", "1", "--no-progress", "--out", tmp_path / "out"]


@pytest.mark.parametrize("rows,needles", [
    ([["a", 1, 2, "x7"], ["b", 1, 2, 3]], ["row 1", "column 3", "non-numeric", "x7"]),
    ([["a", 1, 2, 3], ["b", "nan", "", "nan"]], ["row 2", "all NaN"]),
    ([["a", 1, "inf", 3], ["b", 1, 2, 3]], ["row 1", "infinite"]),
    ([["a", 1, 2, 3], ["b", 1, "-1e300", 3]], ["row 2", "-1e+300", "beyond float32's range"]),
    ([["a", 1, 2, 3], ["a", 4, 5, 6], ["a", 7, 8, 9]], ["single class"]),
    ([["a", 1, 2, 3], ["a", 4, 5, 6], ["a", 7, 8, 9], ["b", 1, 1, 1]], ["single training sample", "--val-fraction 0"]),
])
def test_bad_csv_contents(tmp_path, capsys, good_csv, rows, needles):
    bad = write_csv(tmp_path / "bad.csv", rows)
    code, _, err = run_cli(capsys, *teacher_args(tmp_path, bad, "--test-path", good_csv))
    assert_clean_error(code, err, str(bad), *needles)
    assert not (tmp_path / "out").exists()


def test_unknown_dataset(tmp_path, capsys):
    code, _, err = run_cli(capsys, *teacher_args(tmp_path, "GunPiont"))
    assert_clean_error(code, err, "unknown dataset 'GunPiont'", "did you mean GunPoint")


def test_missing_and_empty_files(tmp_path, capsys, good_csv):
    code, _, err = run_cli(capsys, *teacher_args(tmp_path, tmp_path / "nope.csv", "--test-path", good_csv))
    assert_clean_error(code, err, "file not found", "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    code, _, err = run_cli(capsys, *teacher_args(tmp_path, tmp_path / "empty.csv", "--test-path", good_csv))
    assert_clean_error(code, err, "empty.csv", "empty")


def test_channel_mismatch(tmp_path, capsys):
    y = np.array(["a", "b"] * 5)
    np.savez(tmp_path / "tr.npz", X=np.random.default_rng(0).normal(size=(10, 2, 9)), y=y)
    np.savez(tmp_path / "te.npz", X=np.random.default_rng(1).normal(size=(10, 3, 9)), y=y)
    code, _, err = run_cli(capsys, *teacher_args(tmp_path, tmp_path / "tr.npz", "--test-path", tmp_path / "te.npz"))
    assert_clean_error(code, err, "train has 2 channels but test has 3")


@pytest.mark.parametrize("earliness,needle", [("0", "(0, 1]"), ("-0.2", "(0, 1]"), ("1.5", "(0, 1]"),
                                              ("0.001", "empty prefix")])
def test_bad_earliness(teacher_dir, tmp_path, capsys, earliness, needle):
    code, _, err = run_cli(capsys, "distill", "--teacher", teacher_dir, *KD, "--earliness", earliness,
                           "--out", tmp_path / "s")
    assert_clean_error(code, err, "earliness", needle)
    assert not (tmp_path / "s").exists()


def test_unknown_method_and_architecture(teacher_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "distill", "--teacher", teacher_dir, "--method", "kdd", "--earliness", "0.5",
                           "--out", tmp_path / "s")
    assert_clean_error(code, err, "unknown method 'kdd'", "did you mean")
    code, _, err = run_cli(capsys, "teacher", *TINY, "--arch", "transformer", "--out", tmp_path / "t")
    assert_clean_error(code, err, "unknown architecture 'transformer'", "lstm")
    code, _, err = run_cli(capsys, "distill", "--teacher", teacher_dir, *KD, "--option", "temprature=3",
                           "--out", tmp_path / "s")
    assert_clean_error(code, err, "unknown option 'temprature'", "temperature")


def test_config_errors(tmp_path, capsys):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("train:\n  epochs: [1, 2\n")
    code, _, err = run_cli(capsys, "teacher", *TINY, "--config", bad_yaml, "--out", tmp_path / "t")
    assert_clean_error(code, err, "bad.yaml", "YAML syntax error", "line")
    code, _, err = run_cli(capsys, "teacher", *TINY, "--set", "train.epoch=3", "--out", tmp_path / "t")
    assert_clean_error(code, err, "unknown config key 'train.epoch'", "train.epochs")
    unknown_file = tmp_path / "u.yaml"
    unknown_file.write_text("trian: {epochs: 3}\n")
    code, _, err = run_cli(capsys, "teacher", *TINY, "--config", unknown_file, "--out", tmp_path / "t")
    assert_clean_error(code, err, "unknown config key 'trian'", "train")
    twice = tmp_path / "twice.yaml"
    twice.write_text("train:\n  epochs: 2\n  batch_size: 8\n  epochs: 3\n")   # PyYAML alone keeps the last
    code, _, err = run_cli(capsys, "teacher", *TINY, "--config", twice, "--out", tmp_path / "t")
    assert_clean_error(code, err, "twice.yaml", "line 4", "key 'epochs' is given twice")
    for option, value in (("--epochs", "0"), ("--epochs", "-3"), ("--batch-size", "0"), ("--batch-size", "-1")):
        code, _, err = run_cli(capsys, "teacher", *TINY, option, value, "--out", tmp_path / "t")
        assert_clean_error(code, err, "must be a positive integer")
    assert not (tmp_path / "t").exists()


def test_corrupt_and_foreign_checkpoints(teacher_dir, tmp_path, capsys):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(teacher_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a checkpoint at all")
    code, _, err = run_cli(capsys, "evaluate", broken)
    assert_clean_error(code, err, "model.safetensors", "corrupt")
    code, _, err = run_cli(capsys, "distill", "--teacher", broken, *KD, "--out", tmp_path / "s")
    assert_clean_error(code, err, "corrupt")
    # a checkpoint whose weights belong to another architecture than it claims
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(teacher_dir / "model.safetensors"), "pt") as fh:
        meta, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
    inner = json.loads(meta["meta"])
    inner["model"]["arch"] = "fcn"
    save_file(tensors, str(broken / "model.safetensors"), metadata={**meta, "meta": json.dumps(inner)})
    code, _, err = run_cli(capsys, "evaluate", broken)
    assert_clean_error(code, err, "do not fit a 'fcn' model")


def test_resume_with_another_architecture(tmp_path, capsys, monkeypatch):
    undo = interrupt_at(monkeypatch, 2)
    code, _, err = run_cli(capsys, "teacher", *TINY, "--select", "acc_loss", "--set", "train.checkpoint_every=1",
                           "--out", tmp_path / "t")
    assert code == 130 and "--resume" in err
    undo()
    code, _, err = run_cli(capsys, "teacher", *TINY, "--select", "acc_loss", "--arch", "fcn", "--resume",
                           "--out", tmp_path / "t")
    assert_clean_error(code, err, "started with other settings (model.arch lstm -> fcn)")


def test_resume_of_cross_validated_teacher_with_other_settings(tmp_path, capsys, monkeypatch):
    from earlykd.train.loop import Trainer
    real = Trainer._train_epoch

    def refit_interrupted(self, train):
        if self.state_path is not None:  # after the folds, in the refit
            raise KeyboardInterrupt
        return real(self, train)

    monkeypatch.setattr(Trainer, "_train_epoch", refit_interrupted)
    code, _, _ = run_cli(capsys, "teacher", *TINY, "--out", tmp_path / "t")
    assert code == 130 and (tmp_path / "t" / "cv.json").is_file()
    monkeypatch.setattr(Trainer, "_train_epoch", real)
    code, _, err = run_cli(capsys, "teacher", *TINY, "--lr", "0.01", "--resume", "--out", tmp_path / "t")
    assert_clean_error(code, err, "cv.json", "other settings")


def test_predict_wrong_channels(student_dir, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((3, 2, 16)))
    (tmp_path / "pred.csv").write_text("earlier result\n")
    code, _, err = run_cli(capsys, "predict", student_dir, "--input", tmp_path / "x.npy",
                           "--output", tmp_path / "pred.csv")
    assert_clean_error(code, err, "x.npy", "row 1", "2 channel(s)", "expects 1")
    assert (tmp_path / "pred.csv").read_text() == "earlier result\n"


def test_predict_refuses_values_beyond_float32_instead_of_printing_nan(student_dir, tmp_path, capsys):
    x = np.random.default_rng(0).standard_normal((3, 1, 16))
    x[1, 0, 5] = 1e308   # finite in float64, infinite in the models' float32
    np.save(tmp_path / "x.npy", x)
    code, out, err = run_cli(capsys, "predict", student_dir, "--input", tmp_path / "x.npy")
    assert_clean_error(code, err, "x.npy", "row 2", "beyond float32's range")
    assert out == ""


def test_a_value_that_overflows_once_standardised_is_refused():
    from earlykd.prefix import student_view
    series = [np.ones((1, 8)), np.full((1, 8), 1e38)]   # within float32, but not once divided by the std
    with pytest.raises(EarlykdError, match="series 2 of 2: a value overflows float32"):
        student_view(series, 1.0, "truncate", 8, 8, torch.zeros(1), torch.full((1,), 1e-3))


def test_output_directory_not_writable(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "teacher", *TINY, "--out", blocker / "run")
    assert_clean_error(code, err, "not writable", str(blocker / "run"))


def test_finished_run_is_never_overwritten(teacher_dir, capsys):
    before = {p.name: p.read_bytes() for p in teacher_dir.iterdir() if p.is_file()}
    code, _, err = run_cli(capsys, "teacher", *TINY, "--epochs", "1", "--out", teacher_dir)
    assert_clean_error(code, err, "already holds a finished run")
    assert {p.name: p.read_bytes() for p in teacher_dir.iterdir() if p.is_file()} == before


def test_a_diverged_training_leaves_no_checkpoint(teacher_dir, tmp_path, capsys):
    """A run whose weights went NaN is refused before its model is saved: the folder holds its config, as an
    interrupted run's does, and nothing that predict could read."""
    fast = ["--epochs", "1", "--lr", "1e30", "--no-progress"]
    for args in (["teacher", "--data", "UnitTest", "--length", "32", "--arch", "fcn", "--layers", "1", "--hidden", "8",
                  "--select", "acc_loss", *fast, "--out", tmp_path / "t"],
                 ["early", "--teacher", teacher_dir, "--batch-size", "8", *fast, "--out", tmp_path / "a"]):
        code, _, err = run_cli(capsys, *args)
        assert_clean_error(code, err, "diverged")
        out = args[-1]
        assert [p.name for p in out.iterdir()] == ["config.yaml"], list(out.iterdir())
