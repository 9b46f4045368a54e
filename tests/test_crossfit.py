"""Cross-fitted calibration of the anytime student (early.crossfit): out-of-fold predictions, resume, errors."""
import json

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, run_cli

from earlykd.early import crossfit

COMMON = ["early", "--levels", "0.5", "--mode", "truncate", "--arch", "fcn", "--layers", "1", "--hidden", "4",
          "--epochs", "2", "--batch-size", "8", "--no-progress"]


def test_policies_are_calibrated_on_out_of_fold_predictions_of_train_and_val(teacher_dir, tmp_path, capsys):
    from earlykd.early.run import load_decider
    out = tmp_path / "cf"
    code, printed, err = run_cli(capsys, *COMMON, "--teacher", teacher_dir, "--method", "kd", "--policy",
                                 "threshold,calibrated,uncertainty,elects", "--set", "early.crossfit=3", "--out", out)
    assert code == 0, err
    assert printed.count("(out-of-fold HM ") == 4 and "validation HM" not in printed
    record = json.loads((out / "run.json").read_text())
    data = json.loads((teacher_dir / "run.json").read_text())["data"]
    assert record["calibration"] == {"on": "out-of-fold", "folds": 3, "cases": data["train"] + data["val"]}
    assert set(record["policies_val"]) == {"threshold", "calibrated", "uncertainty", "elects"}
    assert not list(out.glob("crossfit-fold*.npy")) and not (out / "last.safetensors").exists()
    stored = json.loads((out / "decide.json").read_text())["policies"]
    assert stored["elects"]["params"]["reads"] == "logits" and stored["uncertainty"]["params"]["heads"] is None
    assert load_decider(out, "elects").policy.name == "elects"


@pytest.mark.parametrize("value", ["1", "-2", "true", "two"])
def test_a_bad_number_of_folds_is_one_line(teacher_dir, tmp_path, capsys, value):
    code, _, err = run_cli(capsys, *COMMON, "--teacher", teacher_dir, "--set", f"early.crossfit={value}",
                           "--out", tmp_path / "bad")
    assert_clean_error(code, err, "early.crossfit")


def test_crossfit_with_aria_is_one_line(teacher_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, *COMMON, "--teacher", teacher_dir, "--sampling", "aria", "--set",
                           "early.crossfit=2", "--out", tmp_path / "aria")
    assert_clean_error(code, err, "early.crossfit", "uniform")


def _problem(cases: int = 30):
    """Prepared-like training and validation splits of three classes, with the fields crossfit_anytime reads."""
    from types import SimpleNamespace
    g = torch.Generator().manual_seed(0)
    y = torch.arange(cases) % 3
    x = torch.randn(cases, 1, 16, generator=g) + y[:, None, None].float()
    split = {"train": slice(0, 24), "val": slice(24, cases)}

    def view(name, e, mode, channels):
        return x[split[name], :, :max(1, int(round(16 * e)))]
    series = {k: list(x[v].numpy()) for k, v in split.items()}
    return SimpleNamespace(view=view, labels={k: y[v] for k, v in split.items()}, n_classes=3,
                           classes=["a", "b", "c"], series=series, reference_length=16), x, y


def test_every_series_is_predicted_once_by_a_student_that_did_not_see_it(monkeypatch, tmp_path):
    data, x, y = _problem()
    fitted, predicted = [], []
    real_fit, real_logits = crossfit.fit_on, crossfit.LevelSplit.logits

    def fit_on(split, *args, **kwargs):
        fitted.append({bytes(v.numpy()) for v in split.views[-1]})
        return real_fit(split, *args, **kwargs)

    def logits(self, model):
        predicted.append(({bytes(v.numpy()) for v in self.views[-1]}, len(fitted)))
        return real_logits(self, model)
    monkeypatch.setattr(crossfit, "fit_on", fit_on)
    monkeypatch.setattr(crossfit.LevelSplit, "logits", logits)
    model = {"arch": "fcn", "layers": 1, "hidden": 4}
    from earlykd.config import DEFAULTS
    train = {**DEFAULTS["train"], "epochs": 2, "batch_size": 8, "seed": 0, "warmup": 0, "select": "loss",
             "min_epochs": 0, "checkpoint_every": 0, "progress": False}
    state = tmp_path / "last.safetensors"
    args = (data, None, "base", {}, model, train, [0.5, 1.0], "truncate", None, torch.device("cpu"), 3)
    _, _, oof, pooled_y, _, k = crossfit.crossfit_anytime(*args, state_path=state)
    everything = {bytes(v.numpy()) for v in x}
    assert k == 3 and len(fitted) == 4 and fitted[-1] == everything        # 3 folds, then the pooled student
    held = [cases for cases, _ in predicted]
    assert set().union(*held) == everything and sum(map(len, held)) == len(x)
    for cases, fold in predicted:
        assert not cases & fitted[fold - 1]                                   # never trained on what it predicts
    assert np.array_equal(pooled_y, y.numpy()) and np.all(np.abs(oof).sum(-1) > 0)
    # a resumed run reads the folds it kept and trains only the pooled student again, with the same result
    fitted.clear()
    again = crossfit.crossfit_anytime(*args, state_path=state, resume=True)[2]
    assert len(fitted) == 1 and np.array_equal(again, oof)


def test_the_estimator_calibrates_out_of_fold_when_asked():
    import earlykd
    from earlykd.early.estimator import EarlyInputError
    from test_elects import series
    X, y, _ = series("late", 40)
    tiny = {"hidden": 4, "layers": 1, "epochs": 2, "batch_size": 8, "length": 16, "threads": 1, "levels": [0.5]}
    est = earlykd.EarlyClassifier(policy="calibrated", crossfit=3, **tiny).fit(X, y)
    assert len(est.decider_.policy.params["temperatures"]) == 2 and est.predict(X)[1].all()
    with pytest.raises(EarlyInputError, match="crossfit must be 0"):
        earlykd.EarlyClassifier(crossfit=1, **tiny).fit(X, y)
