"""The uncertainty policy: DLF's mutual information (entropy without DLF heads), a threshold chosen on
validation only, later stops when uncertain, and a stream that decides as the batch does."""
from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
import torch
from conftest import run_cli

from earlykd import cli
from earlykd.decide import build_policy, first_stops
from earlykd.distill import TeacherDims, build_method
from earlykd.distill.dlf.gaussian import predictive_stats
from earlykd.errors import EarlykdError
from earlykd.models import build_model


def dlf_policy(seed=0, feature_dim=6, c=3):
    torch.manual_seed(seed)
    student = build_model("fcn", 1, c, layers=1, hidden=feature_dim)
    method = build_method("dlf", student, TeacherDims(c, feature_dim, feature_dim, 8, members=4))
    with torch.no_grad():
        method.heads.l_lower.normal_()
    return build_policy("uncertainty").bind(method.checkpoint_tensors()), method


def test_mutual_information_is_dlfs_with_the_fixed_draws():
    policy, method = dlf_policy()
    assert policy.measure == "mutual_info"
    rng = np.random.default_rng(1)
    mu, feature = rng.normal(size=(5, 3)), rng.normal(size=(5, 6)) * 3
    ours = policy.uncertainty(mu, feature)
    eps = torch.from_numpy(np.random.default_rng(0).standard_normal((32, 3)))
    with torch.no_grad():
        phi = method.heads.phi(torch.from_numpy(feature).float()).double()
        draws = torch.from_numpy(mu) + phi.norm(dim=1)[:, None] * (eps @ method.heads.L().double().T)[:, None]
    assert np.allclose(ours, predictive_stats(draws)[2].numpy(), atol=1e-5)
    stored = build_policy(json.loads(json.dumps(policy.to_dict())))
    assert np.allclose(stored.uncertainty(mu, feature), ours)


def test_stops_later_when_mutual_information_is_high():
    policy, method = dlf_policy()
    with torch.no_grad():    # |Phi| proportional to the first feature coordinate
        method.heads.phi.weight.zero_()
        method.heads.phi.weight[:, 0] = 1.0
        method.heads.phi.bias.zero_()
    policy.bind(method.checkpoint_tensors())
    logits = np.zeros((4, 2, 3))
    logits[..., 0] = 2.0                                   # the same confident mean for both cases
    features = np.zeros((4, 2, 6))
    features[:, 0, 0] = [0.01, 0.01, 0.01, 0.01]           # case 0: nearly no spread
    features[:, 1, 0] = [3.0, 2.0, 0.01, 0.01]             # case 1: wide until checkpoint 2
    policy.params["threshold"] = 0.01
    assert first_stops(policy, logits, features).tolist() == [0, 2]
    with pytest.raises(EarlykdError, match="needs the student's feature"):
        first_stops(policy, logits)


def test_entropy_fallback_without_dlf_heads():
    policy = build_policy("uncertainty").bind({})
    assert policy.measure == "entropy"
    probs = np.array([[[0.98, 0.02], [0.5, 0.5]], [[0.98, 0.02], [0.6, 0.4]], [[0.98, 0.02], [0.97, 0.03]]])
    policy.params["threshold"] = 0.2
    assert first_stops(policy, np.log(probs)).tolist() == [0, 2]


def test_threshold_is_chosen_on_validation_only():
    rng = np.random.default_rng(3)
    checkpoints, cases = 5, 60
    y = rng.integers(3, size=cases)
    logits = rng.normal(size=(checkpoints, cases, 3))
    logits[np.arange(checkpoints)[:, None], np.arange(cases), y] += np.linspace(0, 4, checkpoints)[:, None]
    features = rng.normal(size=(checkpoints, cases, 6)) / np.arange(1, checkpoints + 1)[:, None, None]
    earliness = np.linspace(0.2, 1.0, checkpoints)
    policy, _ = dlf_policy()
    policy.calibrate(logits, y, earliness, features)
    chosen = policy.params["threshold"]
    hm = policy.validation["hm"]
    again, _ = dlf_policy()
    assert again.calibrate(logits, y, earliness, features).params["threshold"] == chosen
    for t in np.linspace(0, 1.2, 61):   # no fixed threshold does better on validation
        fixed, _ = dlf_policy()
        fixed.params["threshold"] = float(t)
        assert hm >= fixed.score(logits, y, earliness, features)[0] - 1e-12
    other = rng.normal(size=(checkpoints, 20, 3))   # scoring other data leaves the setting alone
    policy.score(other, rng.integers(3, size=20), earliness, rng.normal(size=(checkpoints, 20, 6)))
    assert policy.params["threshold"] == chosen


@pytest.fixture(scope="module")
def dlf_anytime_run(teacher_dir, tmp_path_factory):
    """`earlykd early --method dlf --policy uncertainty`, its threshold then set to spread the test decisions."""
    from earlykd.data import load_raw
    from earlykd.early.run import load_decider
    path = tmp_path_factory.mktemp("unc") / "anytime"
    assert cli.main(["early", "--teacher", str(teacher_dir), "--method", "dlf", "--policy", "uncertainty,threshold",
                     "--levels", "0.25,0.5,0.75", "--mode", "truncate", "--epochs", "4", "--batch-size", "8",
                     "--no-progress", "--out", str(path)]) == 0
    X = np.stack(load_raw({"name": "UnitTest"}).X_test)
    decider = load_decider(path)
    assert decider.policy.measure == "mutual_info"
    seen = [decider.policy.uncertainty(*decider.outputs(list(X), c)) for c in range(len(decider.levels) - 1)]
    stored = json.loads((path / "decide.json").read_text())
    stored["policies"]["uncertainty"]["params"]["threshold"] = float(np.median(np.concatenate(seen)))
    (path / "decide.json").write_text(json.dumps(stored))
    return path, X


def test_dlf_anytime_student_keeps_its_heads_and_streams_as_the_batch(dlf_anytime_run, capsys, monkeypatch):
    from earlykd import EarlyClassifier
    from test_stream import check_equal, interleaved, parse_output
    path, X = dlf_anytime_run
    est = EarlyClassifier.from_run(path)
    labels, decided = est.predict(X)
    assert decided.all()
    stops, probs = est.decision_checkpoints().copy(), est.state_info["probs"].copy()
    monkeypatch.setattr(sys, "stdin", io.StringIO(interleaved(X, per_line=3)))
    code, out, err = run_cli(capsys, "predict", str(path), "--stream")
    assert code == 0, err
    check_equal(parse_output(out), labels, stops, probs, est.decider_)
    from earlykd.distill.dlf import predictive
    from earlykd.train.checkpoint import load_tensors
    assert any(k.startswith("dlf.") for k in load_tensors(path / "model.safetensors")[0])   # heads kept
    assert predictive(path, torch.randn(3, 1, 16), 8).probs.shape == (3, len(est.classes_))
    record = json.loads((path / "run.json").read_text())
    assert "uncertainty" in record["test_policies"] and "uncertainty" in record["policies_val"]


def test_early_classifier_with_dlf_uses_mutual_information():
    from earlykd import EarlyClassifier
    from earlykd.data import load_raw
    raw = load_raw({"name": "UnitTest"})
    X, y = np.stack(raw.X_train), np.asarray(raw.y_train)
    est = EarlyClassifier(method="dlf", policy="uncertainty", hidden=8, layers=1, epochs=3, batch_size=8,
                          levels="0.5,1.0", length=32).fit(X, y)
    assert est.decider_.policy.measure == "mutual_info"
    labels, decided = est.predict(np.stack(raw.X_test))
    assert decided.all() and len(labels) == len(raw.X_test)
