"""The anytime student: level sampling, validation over levels, every method, and `earlykd early`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, run_cli

from earlykd.data import load_raw, prepare
from earlykd.distill import METHODS, TeacherOutputs
from earlykd.early.anytime import LevelSplit, checkpoints, parse_levels, train_anytime
from earlykd.errors import EarlykdError

LEVELS = [0.25, 0.5, 0.75, 1.0]


@pytest.fixture(scope="module")
def data():
    return prepare(load_raw({"name": "UnitTest"}), length=32)


def fake_teacher(n: int) -> TeacherOutputs:
    g = torch.Generator().manual_seed(0)
    return TeacherOutputs(torch.randn(n, 2, generator=g), torch.randn(n, 8, generator=g),
                          torch.randn(n, 32, 8, generator=g))


def test_levels_parse_and_checkpoints():
    assert parse_levels("0.5,0.2") == [0.2, 0.5, 1.0]
    assert parse_levels(None)[0] == 0.05 and parse_levels(None)[-1] == 1.0 and len(parse_levels(None)) == 20
    for bad in ("0,0.5", "0.5,1.5", "a,b", ""):
        with pytest.raises(EarlykdError):
            parse_levels(bad)
    # T = 24: 0.1 and 0.12 both observe 3 samples; the larger level is kept
    assert checkpoints([0.1, 0.12, 0.5, 1.0], 24, 100) == [0.12, 0.5, 1.0]


def test_batches_draw_one_seeded_level_each_from_the_prefix_views(data):
    split = LevelSplit.of(data, "train", LEVELS, "truncate", None, fake_teacher(len(data.labels["train"])))
    views = {e: data.view("train", e, "truncate") for e in LEVELS}
    drawn = []
    for batch, cases in split.batches(np.random.default_rng(0), 4):
        level = next(e for e in LEVELS if views[e].shape[-1] == batch.x.shape[-1])
        drawn.append(level)
        rows = [int(np.flatnonzero((views[level] == x).all(-1).all(-1))[0]) for x in batch.x]
        assert torch.equal(batch.x, views[level][rows])             # inputs are the contract's views
        assert torch.equal(batch.y, data.labels["train"][rows])
        assert torch.equal(batch.teacher.logits, split.teacher.logits[rows])  # full-series teacher, same cases
        assert cases == len(rows)
    assert len(set(drawn)) > 1
    again = [b.x.shape[-1] for b, _ in split.batches(np.random.default_rng(0), 4)]
    assert again == [views[e].shape[-1] for e in drawn]                # seeded


def test_validation_score_is_the_mean_over_levels(data):
    from earlykd.models import build_model
    model = build_model("fcn", 1, 2, 1, 4).eval()
    split = LevelSplit.of(data, "val", LEVELS, "truncate", None)
    loss, acc = split.score(model)
    per_level = [torch.nn.functional.cross_entropy(model(x).logits, split.y).item() for x in split.views]
    assert loss == pytest.approx(np.mean(per_level), rel=1e-5)
    assert split.logits(model).shape == (len(LEVELS), len(split), 2)


TRAIN = {"epochs": 2, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.0, "schedule": "constant", "select": "loss",
         "seed": 0, "min_epochs": 0, "patience": None, "progress": False, "checkpoint_every": 0, "warmup": 1}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_an_anytime_student(data, method):
    n = len(data.labels["train"])
    outputs = {"train": fake_teacher(n)}
    distiller, fit, _ = train_anytime(data, outputs, method, {}, {"arch": "fcn", "layers": 1, "hidden": 8},
                                      TRAIN, LEVELS, "truncate", None, torch.device("cpu"))
    assert fit.epochs_run == 2
    assert all(np.isfinite(v) for row in fit.history for v in row.values())


def test_same_seed_same_anytime_student(data):
    def weights():
        distiller, _, _ = train_anytime(data, None, "base", {}, {"arch": "fcn", "layers": 1, "hidden": 8},
                                        TRAIN, LEVELS, "truncate", None, torch.device("cpu"))
        return [p.detach().clone() for p in distiller.student.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(weights(), weights()))


@pytest.fixture(scope="module")
def anytime_dir(teacher_dir, tmp_path_factory):
    from earlykd import cli
    path = tmp_path_factory.mktemp("anytime") / "run"
    code = cli.main(["early", "--teacher", str(teacher_dir), "--method", "kd", "--policy", "threshold,calibrated",
                     "--levels", "0.25,0.5,0.75", "--mode", "truncate", "--epochs", "3", "--batch-size", "8",
                     "--no-progress", "--out", str(path)])
    assert code == 0
    return path


def test_early_run_directory(anytime_dir):
    record = json.loads((anytime_dir / "run.json").read_text())
    assert record["kind"] == "anytime" and record["method"] == "kd"
    assert record["earliness"] == [0.25, 0.5, 0.75, 1.0]
    assert set(record["test_levels"]) == {"0.25", "0.5", "0.75", "1.0"}
    assert set(record["test_policies"]) == {"threshold", "calibrated"}
    for scores in record["test_policies"].values():
        assert 0 <= scores["hm"] <= 1 and 0 < scores["earliness"] <= 1
    stored = json.loads((anytime_dir / "decide.json").read_text())
    assert stored["default"] == "threshold"
    assert len(stored["policies"]["calibrated"]["params"]["temperatures"]) == 4
    import yaml
    assert yaml.safe_load((anytime_dir / "config.yaml").read_text())["prefix"]["earliness"] == record["earliness"]


def test_without_policies_every_one_is_calibrated_and_validation_picks_the_default(teacher_dir, anytime_dir, tmp_path,
                                                                                     capsys):
    """No --policy: every registered policy is calibrated and the default is the one of highest validation HM
    (ties: accuracy, then registry order); no --mode: truncate. The config keeps 'no names', so it trains the same
    run again. Named policies keep the first as the default (anytime_dir: threshold, then calibrated)."""
    import yaml

    from earlykd.decide import POLICIES
    out = tmp_path / "auto"
    code, printed, err = run_cli(capsys, "early", "--teacher", teacher_dir, "--method", "base", "--levels", "0.25,0.5",
                                 "--epochs", "2", "--batch-size", "8", "--no-progress", "--out", out)
    assert code == 0, err
    record = json.loads((out / "run.json").read_text())
    stored = json.loads((out / "decide.json").read_text())
    assert list(stored["policies"]) == list(POLICIES) == list(record["policies_val"])
    ranked = sorted(POLICIES, key=lambda n: (-record["policies_val"][n]["cv_hm"], -record["policies_val"][n]["cv_accuracy"],
                                             list(POLICIES).index(n)))
    assert stored["default"] == record["default_policy"] == ranked[0]
    assert record["default_policy_by"] == "highest cross-validated validation HM" and record["prefix_mode"] == "truncate"
    assert f"default policy: {ranked[0]} (highest cross-validated validation HM)" in printed
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["early"]["policies"] is None and cfg["prefix"]["mode"] == "truncate"
    named = json.loads((anytime_dir / "run.json").read_text())
    assert named["default_policy"] == "threshold" and named["default_policy_by"] == "the first named"
    code, _, err = run_cli(capsys, "early", "--config", out / "config.yaml", "--out", tmp_path / "again")
    assert code == 0, err
    assert json.loads((tmp_path / "again" / "decide.json").read_text()) == stored
    code, _, err = run_cli(capsys, "early", "--config", anytime_dir / "config.yaml", "--policy", "auto",
                           "--epochs", "1", "--out", tmp_path / "named-then-auto")
    assert code == 0, err   # an explicit auto wins over the policies the config names
    assert json.loads((tmp_path / "named-then-auto" / "run.json").read_text())["default_policy_by"] == \
        "highest cross-validated validation HM"
    code, _, err = run_cli(capsys, "early", "--config", anytime_dir / "config.yaml", "--set", "early.policies=auto",
                           "--epochs", "1", "--out", tmp_path / "config-auto")
    assert code == 0, err   # a config may say auto too
    assert json.loads((tmp_path / "config-auto" / "decide.json").read_text())["policies"].keys() == set(POLICIES)
    code, _, err = run_cli(capsys, "early", "--config", anytime_dir / "config.yaml", "--set", "early.policies=3",
                           "--out", tmp_path / "config-bad")
    assert_clean_error(code, err, "early.policies must be a list of policy names, auto or null")


def test_a_coarse_grid_under_truncated_prefixes_gets_a_note_naming_the_series_length():
    from earlykd.early.cli import grid_note
    record = {"data": {"length": 100, "reference_length": 1460}, "prefix_mode": "truncate", "earliness": [0.05, 1.0]}
    note = grid_note(record, None)
    assert "1460 samples" in note and "sees 5 steps" in note and "early.length=1460" in note
    assert "sees 7 steps" in grid_note({**record, "earliness": [0.07, 1.0]}, None)   # the steps the student gets
    assert grid_note(record, 100) is None                                    # the user chose the grid
    assert grid_note({**record, "prefix_mode": "stretch"}, None) is None     # stretch keeps the samples seen
    assert grid_note({**record, "data": {"length": 100, "reference_length": 80}}, None) is None


def test_policy_names_take_auto_alone_and_name_unknown_ones():
    from earlykd.decide import policy_names
    assert policy_names(["auto"]) is None and policy_names(["elects", "threshold"]) == ["elects", "threshold"]
    for names, needle in ((["auto", "elects"], "no other names"), (["tresh"], "did you mean threshold?")):
        with pytest.raises(EarlykdError, match=needle):
            policy_names(names)


def test_best_on_validation_breaks_ties_by_accuracy_then_order():
    from earlykd.decide import best_on_validation, build_policy
    policies = {}
    for name, hm, acc in (("threshold", 0.8, 0.7), ("calibrated", 0.9, 0.8), ("elects", 0.9, 0.85),
                          ("uncertainty", 0.9, 0.85)):
        policies[name] = build_policy(name)
        policies[name].validation = {"hm": hm, "accuracy": acc, "earliness": 0.1}
    assert best_on_validation(policies) == "elects"
    policies["elects"].validation["accuracy"] = 0.8
    assert best_on_validation(policies) == "uncertainty"
    with pytest.raises(EarlykdError, match="no calibrated policy"):
        best_on_validation({})


def test_best_on_validation_ranks_by_the_cross_validated_hm_where_measured():
    """The calibration's own HM is the best of its search on the cases it searched; the choice ranks by the
    cross-validated one, and falls back to the own HM only for records without it."""
    from earlykd.decide import best_on_validation, build_policy
    policies = {name: build_policy(name) for name in ("threshold", "calibrated")}
    policies["threshold"].validation = {"hm": 0.95, "accuracy": 1.0, "cv_hm": 0.6, "cv_accuracy": 0.7}
    policies["calibrated"].validation = {"hm": 0.85, "accuracy": 0.9, "cv_hm": 0.7, "cv_accuracy": 0.7}
    assert best_on_validation(policies) == "calibrated"
    for p in policies.values():
        del p.validation["cv_hm"], p.validation["cv_accuracy"]
    assert best_on_validation(policies) == "threshold"


def test_an_anytime_runs_config_trains_the_same_run_again(anytime_dir, tmp_path, capsys):
    """config.yaml names the teacher, the levels and the policies: `earlykd early --config` needs nothing else,
    and gives the same numbers (same seed, machine and torch build)."""
    again = tmp_path / "again"
    code, _, err = run_cli(capsys, "early", "--config", anytime_dir / "config.yaml", "--out", again)
    assert code == 0, err
    first, second = (json.loads((d / "run.json").read_text()) for d in (anytime_dir, again))
    assert second["earliness"] == first["earliness"] and second["config_hash"] == first["config_hash"]
    assert second["test_policies"] == first["test_policies"] and second["test"] == first["test"]
    assert json.loads((again / "decide.json").read_text()) == json.loads((anytime_dir / "decide.json").read_text())
    code, _, err = run_cli(capsys, "distill", "--config", anytime_dir / "config.yaml", "--out", tmp_path / "s")
    assert_clean_error(code, err, "a student takes one earliness", "earlykd early")


def test_policies_are_calibrated_on_validation_logits(anytime_dir):
    """The stored validation scores are what the saved student and policy give on the validation split."""
    from earlykd import runs
    from earlykd.early.run import load_decider
    cfg, record = runs.read_run(anytime_dir)
    data = runs.load_prepared(cfg["data"])
    for name, val in record["policies_val"].items():
        decider = load_decider(anytime_dir, name)
        split = LevelSplit.of(data, "val", decider.levels, decider.mode, None)
        hm, acc, earl = decider.policy.score(split.logits(decider.student), data.labels["val"].numpy(),
                                             decider.earliness)
        assert (hm, acc, earl) == pytest.approx((val["hm"], val["accuracy"], val["earliness"]))


def test_early_bad_input_is_one_line(capsys, teacher_dir, anytime_dir, tmp_path):
    base = ["early", "--teacher", str(teacher_dir), "--epochs", "1", "--no-progress"]
    code, _, err = run_cli(capsys, *base, "--policy", "treshold", "--out", tmp_path / "a")
    assert_clean_error(code, err, "unknown policy", "threshold")
    code, _, err = run_cli(capsys, *base, "--policy", "autox", "--out", tmp_path / "a")
    assert_clean_error(code, err, "unknown policy 'autox'", "did you mean auto?")
    code, _, err = run_cli(capsys, *base, "--policy", "auto,threshold", "--out", tmp_path / "a")
    assert_clean_error(code, err, "auto calibrates every registered policy", "no other names")
    code, _, err = run_cli(capsys, *base, "--levels", "0.5,1.5", "--out", tmp_path / "b")
    assert_clean_error(code, err, "(0, 1]")
    code, _, err = run_cli(capsys, "early", "--teacher", anytime_dir, "--out", tmp_path / "c")
    assert_clean_error(code, err, "not a teacher")
    code, _, err = run_cli(capsys, *base, "--method", "kdd", "--out", tmp_path / "d")
    assert_clean_error(code, err, "unknown method")
    code, _, err = run_cli(capsys, "early", "--teacher", tmp_path / "missing", "--out", tmp_path / "e")
    assert_clean_error(code, err, "not found")
    code, _, err = run_cli(capsys, *base, "--out", anytime_dir)
    assert_clean_error(code, err, "already holds a finished run")


def test_early_from_an_ensemble_teacher(tmp_path):
    """`earlykd early` takes any teacher object, an ensemble included: the student defaults to the lead
    member's architecture and records the ensemble's id."""
    from earlykd import api, cli
    from earlykd.teacher import Teacher
    ens = api.train_teacher(data="UnitTest", length=32, arch="fcn,lstm", layers=1, hidden=8, epochs=2, batch_size=8,
                            select="acc_loss", progress=False, out=tmp_path / "ens")
    code = cli.main(["early", "--teacher", str(ens.path), "--method", "kd", "--levels", "0.5", "--epochs", "2",
                     "--batch-size", "8", "--no-progress", "--out", str(tmp_path / "any")])
    assert code == 0
    record = json.loads((tmp_path / "any" / "run.json").read_text())
    teacher = Teacher.load(ens.path)
    assert record["teacher_id"] == teacher.id and record["teacher_arch"] == "fcn+lstm"
    assert record["student_arch"] == teacher.model_cfg["arch"]


def test_the_student_may_use_another_grid_than_the_teacher(capsys, teacher_dir, tmp_path):
    """early.length: the student's grid (here 48 steps over the teacher's 32); the teacher's outputs are per case."""
    import yaml

    from earlykd import runs
    from earlykd.early.run import load_decider
    base = ["early", "--teacher", teacher_dir, "--method", "kd", "--levels", "0.5", "--mode", "truncate", "--arch",
            "fcn", "--layers", "1", "--hidden", "4", "--epochs", "1", "--batch-size", "8", "--no-progress"]
    code, _, err = run_cli(capsys, *base, "--set", "early.length=48", "--out", tmp_path / "g")
    assert code == 0, err
    decider = load_decider(tmp_path / "g")
    assert decider.length == 48 and runs.read_run(teacher_dir)[0]["data"]["length"] == 32
    cfg = yaml.safe_load((tmp_path / "g" / "config.yaml").read_text())
    data = runs.load_prepared(cfg["data"])
    assert data.length == 48 and tuple(data.view("test", 1.0, "truncate").shape[1:]) == (1, 48)
    code, _, err = run_cli(capsys, *base, "--set", "early.length=0", "--out", tmp_path / "bad")
    assert_clean_error(code, err, "early.length")
