"""The learned halting policy (ELECTS-style): its loss, its stopping distribution, when it stops, streaming
equal to batch, and calibration on validation only."""
from __future__ import annotations

import io
import json
import math
import sys

import numpy as np
import pytest
from conftest import run_cli

import earlykd
from earlykd import cli
from earlykd.data import load_raw
from earlykd.decide import build_policy, first_stops
from earlykd.decide.elects import (_objective, elects_loss, fit_head, hazard_of, head_inputs, quantile_stops,
                                   stop_distribution)


def test_loss_on_a_hand_computed_case():
    # two cases, three checkpoints; the last halting probability (0.3) is ignored: the last checkpoint stops
    hazard = np.array([[0.5, 0.9], [0.25, 0.9], [0.3, 0.3]])
    p_true = np.array([[0.5, 0.1], [0.8, 0.1], [1.0, 0.1]])
    earliness = np.array([0.25, 0.5, 1.0])
    # case 0: stops at 0, 1, 2 with 0.5, 0.5 * 0.25, 0.5 * 0.75
    ce0 = 0.5 * math.log(2) + 0.125 * -math.log(0.8) + 0.375 * 0.0
    reward0 = 0.5 * 0.5 * 0.75 + 0.125 * 0.8 * 0.5 + 0.375 * 1.0 * 0.0
    # case 1: stops with 0.9, 0.1 * 0.9, 0.1 * 0.1; p(true) is 0.1 throughout
    ce1 = math.log(10)
    reward1 = 0.1 * (0.9 * 0.75 + 0.09 * 0.5 + 0.01 * 0.0)
    alpha = 0.6
    want = (alpha * ce0 - (1 - alpha) * reward0 + alpha * ce1 - (1 - alpha) * reward1) / 2
    assert elects_loss(hazard, np.log(p_true), earliness, alpha) == pytest.approx(want, rel=1e-12)
    assert want == pytest.approx(0.741216, abs=1e-6)


def test_gradient_of_the_head_matches_finite_differences():
    rng = np.random.default_rng(0)
    z, costs, theta = rng.normal(size=(5, 7, 4)), rng.normal(size=(5, 7)), rng.normal(size=5)
    value, grad = _objective(theta, z, costs, 0.1)
    a = z[:-1] @ theta[:-1] + theta[-1]
    hazard = np.concatenate([1 / (1 + np.exp(-a)), np.full((1, 7), 0.5)])
    assert value == pytest.approx((stop_distribution(hazard) * costs).sum(0).mean() + 0.1 * theta[:-1] @ theta[:-1])
    step = 1e-6
    numeric = [(_objective(theta + h, z, costs, 0.1)[0] - _objective(theta - h, z, costs, 0.1)[0]) / (2 * step)
               for h in np.eye(5) * step]
    assert np.allclose(grad, numeric, atol=1e-7)


def test_stop_probabilities_are_a_distribution_over_checkpoints():
    rng = np.random.default_rng(0)
    hazard = rng.uniform(size=(6, 50))
    stop = stop_distribution(hazard)
    assert (stop >= 0).all()
    assert np.allclose(stop.sum(0), 1.0)
    assert np.allclose(stop[-1], np.prod(1 - hazard[:-1], 0))          # the last absorbs the rest
    assert (stop_distribution(np.zeros((4, 3)))[-1] == 1).all()
    # the fitted head's halting probabilities give a distribution too, and the rule stops at its quantile
    logits, features, y, e = separable(first=0)
    policy = build_policy("elects").calibrate(logits, y, e, features)
    learned = hazard_of(policy.params, head_inputs(features, logits, e))
    assert np.allclose(stop_distribution(learned).sum(0), 1.0)
    assert (quantile_stops(learned, policy.params["quantile"]) == first_stops(policy, logits, features)).all()


def separable(first, checkpoints: int = 5, cases: int = 40, classes: int = 10, seed: int = 0):
    """Validation outputs where a case's class shows in logits and features from its checkpoint `first[i]`
    on (chance before); `first` is one checkpoint or one per case: (logits, features, y, earliness)."""
    rng = np.random.default_rng(seed)
    y = np.arange(cases) % classes
    first = np.broadcast_to(first, (cases,))
    logits = rng.normal(size=(checkpoints, cases, classes))
    features = rng.normal(size=(checkpoints, cases, 6))
    shown = np.arange(checkpoints)[:, None] >= first[None, :]
    logits[:, np.arange(cases), y] += 6.0 * shown
    features[:, :, 0] += 3.0 * shown
    return logits, features, y, np.linspace(1 / checkpoints, 1, checkpoints)


def log_true_of(logits, y):
    z = logits - logits.max(-1, keepdims=True)
    return (z - np.log(np.exp(z).sum(-1, keepdims=True)))[:, np.arange(len(y)), y]


@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.7])
def test_the_loss_stops_at_the_first_checkpoint_or_waits_for_the_last(alpha):
    """Fitted with a fixed alpha, on cases of which half show their class at the first checkpoint and half
    only at the last: each case's stopping mass sits where its class shows, and the policy stops there."""
    first = np.where(np.arange(40) % 2 == 0, 0, 4)
    logits, features, y, e = separable(first)
    x = head_inputs(features, logits, e)
    head = fit_head(x, log_true_of(logits, y), e, alpha, 1e-4)
    mass = stop_distribution(hazard_of(head, x))
    assert mass[first, np.arange(40)].min() > 0.9, mass.mean(1)
    policy = build_policy({"name": "elects", "params": {**head, "earliness": e.tolist(), "quantile": 0.5}})
    assert (first_stops(policy, logits, features) == first).all()


def test_calibrated_policy_stops_at_once_when_the_first_checkpoint_decides():
    logits, features, y, e = separable(first=0)
    policy = build_policy("elects").calibrate(logits, y, e, features)
    assert (first_stops(policy, logits, features) == 0).all()
    assert policy.validation["accuracy"] == 1.0


def test_calibrated_policy_waits_for_the_cases_that_need_it():
    # half the cases show their class at e = 0.2, half only from e = 0.4 (chance 0.1 before): stopping each
    # where it shows beats any one checkpoint for all (at the last checkpoint HM is 0, so validation HM never
    # asks to wait for it; the fixed-alpha test above covers that)
    first = np.where(np.arange(40) % 4 < 2, 0, 1)
    logits, features, y, e = separable(first)
    policy = build_policy("elects").calibrate(logits, y, e, features)
    for seed in (0, 1):                       # the validation cases, then fresh ones the head was not fit on
        logits, features, _, _ = separable(first, seed=seed)
        stops = first_stops(policy, logits, features)
        assert (stops[first == 0] == 0).mean() >= 0.9 and (stops[first == 1] == 1).mean() >= 0.9, stops


def series(kind: str, n: int, T: int = 32, seed: int = 0):
    """Four classes. 'early': a class level from the first sample on; 'late': noise for the first 4 samples,
    so the first checkpoint (4 samples) sees nothing and the second (8) sees the class; 'mixed': even cases
    early, odd cases late."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    X = rng.normal(size=(n, 1, T))
    start = {"early": np.zeros(n, int), "late": np.full(n, 4), "mixed": np.where(np.arange(n) % 2 == 0, 0, 4)}[kind]
    X[:, 0] += 2.0 * (y[:, None] - 1.5) * (np.arange(T)[None, :] >= start[:, None])
    return X, y, start


@pytest.mark.parametrize("kind", ["early", "late", "mixed"])
def test_estimator_stops_early_only_when_the_series_allow(kind):
    X, y, _ = series(kind, 200)
    est = earlykd.EarlyClassifier(method="base", policy="elects", hidden=16, layers=1, epochs=100, teacher_epochs=1,
                                  batch_size=16, levels=[0.125, 0.25, 0.5, 0.75, 1.0], length=32, threads=1)
    est.fit(X, y)
    Xt, yt, start = series(kind, 48, seed=1)
    hm, acc, earl = est.score(Xt, yt)
    stops = est.decision_checkpoints().copy()
    assert acc >= 0.85
    # the class shows at the first checkpoint (4 samples) or only at the second (8); with both kinds in one
    # problem the head has to tell them apart case by case (a constant halting rate could not: it gives 0 on one
    # of the two kinds)
    at_once, wait = (0.85, 0.95) if kind != "mixed" else (0.7, 0.8)
    if kind != "late":
        assert (stops[start == 0] == 0).mean() >= at_once
    if kind != "early":
        assert (stops[start == 4] >= 1).mean() >= wait
    # update_predict sample by sample gives the batch decisions
    labels, _ = est.predict(Xt)
    est.reset_state_info()
    got_label, got_stop = {}, {}
    open_ = np.arange(len(Xt))
    for t in range(1, Xt.shape[-1] + 1):
        if not len(open_):
            break
        out, decided = est.update_predict(Xt[open_, :, :t])
        stop = est.state_info["stop"]
        for i, lab, d, s in zip(open_, out, decided, stop):
            if d:
                got_label[i], got_stop[i] = lab, s
        open_ = open_[~decided]
    assert [got_label[i] for i in range(len(Xt))] == list(labels)
    assert [got_stop[i] for i in range(len(Xt))] == list(stops)


@pytest.fixture(scope="module")
def elects_run(teacher_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("elects") / "run"
    assert cli.main(["early", "--teacher", str(teacher_dir), "--method", "kd", "--policy", "elects,threshold",
                     "--levels", "0.25,0.5,0.75", "--mode", "truncate", "--epochs", "3", "--batch-size", "8",
                     "--no-progress", "--out", str(path)]) == 0
    return path


def test_parameters_come_from_validation_only(elects_run, monkeypatch):
    from earlykd import runs
    from earlykd.decide.base import CV_FOLDS, cross_validated, folds_of
    from earlykd.decide.elects import ElectsPolicy
    from earlykd.early.anytime import LevelSplit
    from earlykd.early.run import load_decider
    stored = json.loads((elects_run / "decide.json").read_text())["policies"]["elects"]["params"]
    cfg, record = runs.read_run(elects_run)
    data = runs.load_prepared(cfg["data"])
    decider = load_decider(elects_run, "elects")
    val_logits, val_features = LevelSplit.of(data, "val", decider.levels, decider.mode, None).outputs(decider.student)
    again = ElectsPolicy().calibrate(val_logits, data.labels["val"].numpy(), decider.earliness, val_features)
    for key, value in again.to_dict()["params"].items():
        assert value == (pytest.approx(stored[key]) if key in ("weight", "bias", "center", "scale") else stored[key])
    y = data.labels["val"].numpy()
    crossed = cross_validated("elects", {}, val_logits, y, decider.earliness, val_features)
    assert record["policies_val"]["elects"] == pytest.approx({**again.validation, **crossed})
    assert stored["reads"] == "feature" and len(stored["weight"]) == decider.student.feature_dim + 2
    # train_early hands the policy the validation split and nothing else
    seen = []
    real = ElectsPolicy.calibrate

    def spy(self, logits, y, earliness, features=None, ready=None):
        seen.append((logits.shape, features.shape, np.asarray(y).tolist()))
        return real(self, logits, y, earliness, features, ready)

    monkeypatch.setattr(ElectsPolicy, "calibrate", spy)
    out = elects_run.parent / "again"
    assert cli.main(["early", "--teacher", cfg["teacher"], "--method", "kd", "--policy", "elects",
                     "--levels", "0.25,0.5,0.75", "--mode", "truncate", "--epochs", "1", "--batch-size", "8",
                     "--no-progress", "--out", str(out)]) == 0
    n_val, dim = len(data.labels["val"]), decider.student.feature_dim
    assert seen[0] == ((4, n_val, 2), (4, n_val, dim), data.labels["val"].tolist())
    # then once per cross-validation fold, on the other folds' validation cases: each case left out once
    folds = len(np.unique(folds_of(data.labels["val"].numpy(), min(CV_FOLDS, n_val))))
    assert len(seen) == 1 + folds and all(s[0][1] == s[1][1] < n_val for s in seen[1:])
    assert sum(s[0][1] for s in seen[1:]) == (folds - 1) * n_val


def test_stream_equals_batch(elects_run, capsys, monkeypatch):
    from earlykd import EarlyClassifier
    from earlykd.early.run import load_decider
    X = np.stack(load_raw({"name": "UnitTest"}).X_test)
    # spread the decisions: stop once half the cases would have stopped by the first checkpoint
    decider = load_decider(elects_run, "elects")
    logits, features = decider.outputs(list(X), 0)
    first = hazard_of(decider.policy.params, head_inputs(features, logits, decider.earliness[0]))
    path = elects_run / "decide.json"
    stored = json.loads(path.read_text())
    stored["default"] = "elects"
    stored["policies"]["elects"]["params"]["quantile"] = float(np.median(first))
    path.write_text(json.dumps(stored))
    est = EarlyClassifier.from_run(elects_run)
    labels, decided = est.predict(X)
    stops = est.decision_checkpoints().copy()
    assert decided.all() and len(set(stops)) > 1
    lines = ["series,value"] + [f"s{i},{float(x[0, t])!r}" for t in range(X.shape[-1]) for i, x in enumerate(X)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    code, out, err = run_cli(capsys, "predict", elects_run, "--stream")
    assert code == 0, err
    head, *rows = out.strip().splitlines()
    got = {r.split(",")[0]: r.split(",") for r in rows}
    assert [got[f"s{i}"][1] for i in range(len(X))] == [str(v) for v in labels]
    assert [int(got[f"s{i}"][2]) for i in range(len(X))] == list(stops)
