"""earlykd.EarlyClassifier: aeon's early-classifier contract, streaming equal to batch, and run directories."""
from __future__ import annotations

import numpy as np
import pytest

import earlykd
from earlykd.data import load_raw
from earlykd.decide import harmonic_mean


@pytest.fixture(scope="module")
def unit_test():
    raw = load_raw({"name": "UnitTest"})
    return (np.stack(raw.X_train), raw.y_train, np.stack(raw.X_test), raw.y_test)


@pytest.fixture(scope="module")
def fitted(unit_test):
    X, y, _, _ = unit_test
    est = earlykd.EarlyClassifier(method="kd", policy="threshold", hidden=8, layers=1, epochs=4, batch_size=8,
                                  levels=[0.2, 0.4, 0.6, 0.8], length=32, threads=1)
    return est.fit(X, y)


@pytest.fixture(scope="module")
def anytime_run(teacher_dir, tmp_path_factory):
    from earlykd import cli
    out = tmp_path_factory.mktemp("anytime") / "run"
    assert cli.main(["early", "--teacher", str(teacher_dir), "--policy", "calibrated,threshold", "--levels",
                     "0.3,0.6", "--epochs", "2", "--batch-size", "8", "--no-progress", "--out", str(out)]) == 0
    return out


def spread_decisions(est, X):
    """Set p so that cases decide at different checkpoints (a few epochs leave the calibrated p degenerate)."""
    top = []
    for c in range(len(est.decider_.levels) - 1):
        logits = est.decider_.logits(list(X), c)
        p = np.exp(logits - logits.max(1, keepdims=True))
        top.append((p / p.sum(1, keepdims=True)).max(1))
    est.decider_.policy.params.update(probability=float(np.median(np.concatenate(top))), consecutive=2)


def test_fit_predict_contract(fitted, unit_test):
    _, y, Xt, yt = unit_test
    assert fitted.is_fitted and set(fitted.classes_) == set(y)
    labels, decided = fitted.predict(Xt)
    assert decided.all() and set(labels) <= set(fitted.classes_)       # whole series: every case decided
    probs, decided_p = fitted.predict_proba(Xt)
    assert probs.shape == (len(Xt), 2) and np.allclose(probs.sum(1), 1) and decided_p.all()
    hm, acc, earl = fitted.score(Xt, yt)
    assert acc == pytest.approx(np.mean(labels == yt))
    assert earl == pytest.approx(fitted.decider_.earliness[fitted.decision_checkpoints()].mean())
    assert hm == pytest.approx(harmonic_mean(acc, earl))


def test_undecided_cases_get_minus_one(fitted, unit_test):
    Xt = unit_test[2]
    spread_decisions(fitted, Xt)
    first = fitted.decider_.samples[0]
    labels, decided = fitted.predict(Xt[:, :, :first])
    assert not decided.all()
    assert all(label == -1 for label in labels[~decided])
    probs, _ = fitted.predict_proba(Xt[:, :, :first])
    assert (probs[~decided] == -1).all()


def test_streaming_decisions_equal_batch_decisions(fitted, unit_test):
    Xt = unit_test[2]
    spread_decisions(fitted, Xt)
    labels, _ = fitted.predict(Xt)
    probs, _ = fitted.predict_proba(Xt)
    stops = fitted.decision_checkpoints().copy()
    assert len(set(stops)) > 1, "decisions must be spread over checkpoints for this test to mean anything"

    fitted.reset_state_info()
    open_ = np.arange(len(Xt))
    at = np.full(len(Xt), -1)
    streamed_labels = np.empty(len(Xt), dtype=object)
    streamed_probs = np.zeros_like(probs)
    for n in range(1, Xt.shape[-1] + 1):  # one new sample per call, undecided cases only, order kept
        new_labels, decided = fitted.update_predict(Xt[open_, :, :n])
        new_probs = fitted.state_info["probs"][decided]
        at[open_[decided]] = n
        streamed_labels[open_[decided]] = new_labels[decided]
        streamed_probs[open_[decided]] = new_probs
        open_ = open_[~decided]
        if not len(open_):
            break
    assert not len(open_)
    assert (at == fitted.decider_.samples[stops]).all()          # decided as soon as the checkpoint arrived
    assert (streamed_labels == labels).all()
    assert np.allclose(streamed_probs, probs, atol=1e-6)


def test_update_with_wrong_cases_is_a_value_error(fitted, unit_test):
    Xt = unit_test[2]
    spread_decisions(fitted, Xt)
    fitted.reset_state_info()
    _, decided = fitted.update_predict(Xt[:, :, :fitted.decider_.samples[1]])
    assert decided.any() and not decided.all()
    with pytest.raises(ValueError, match="awaiting a decision"):
        fitted.update_predict(Xt[:, :, :fitted.decider_.samples[2]])  # decided cases were not removed
    with pytest.raises(ValueError, match="channel"):
        fitted.predict(np.repeat(Xt, 2, axis=1))


def test_fit_rejects_an_empty_validation_split(unit_test):
    X, y, _, _ = unit_test
    with pytest.raises(ValueError, match="validation"):
        earlykd.EarlyClassifier(epochs=1, val_fraction=0.0, hidden=4, layers=1, length=32).fit(X, y)


def test_from_run_reproduces_the_run_test_scores(anytime_run, unit_test):
    """The estimator over a run directory decides as the run's own test evaluation did."""
    import json

    record = json.loads((anytime_run / "run.json").read_text())
    for name in ("calibrated", "threshold"):
        est = earlykd.EarlyClassifier.from_run(anytime_run, policy=name)
        hm, acc, earl = est.score(unit_test[2], unit_test[3])
        expected = record["test_policies"][name]
        assert (hm, acc, earl) == pytest.approx((expected["hm"], expected["accuracy"], expected["earliness"]))


def test_from_run_takes_2d_and_3d_input_as_a_fitted_estimator_does(anytime_run, fitted, unit_test):
    """(n_cases, n_timepoints) is a univariate collection for predict, predict_proba, update_predict and score."""
    Xt, yt = unit_test[2], unit_test[3]
    est = earlykd.EarlyClassifier.from_run(anytime_run)
    assert set(est.metadata_) == set(fitted.metadata_)
    for e in (est, fitted):
        first = e.decider_.samples[0]
        for X in (Xt, Xt[:, :, :first]):
            for method in ("predict", "predict_proba"):
                three, two = getattr(e, method)(X), getattr(e, method)(X[:, 0])
                assert all(np.array_equal(a, b) for a, b in zip(three, two))
        e.reset_state_info()
        assert np.array_equal(e.update_predict(Xt[:, 0])[0], e.predict(Xt)[0])
        assert e.score(Xt[:, 0], yt) == e.score(Xt, yt)


@pytest.mark.parametrize("setting, needle", [({"method": "kdd"}, "unknown method"), ({"policy": "x"}, "unknown policy"),
                                             ({"mode": "crop"}, "prefix mode"), ({"levels": [0.5, 2]}, "(0, 1]"),
                                             ({"arch": "lstmm"}, "unknown architecture 'lstmm' (did you mean lstm?)"),
                                             ({"options": {"temp": 2}}, "(did you mean temperature?)"),
                                             ({"options": {"temperature": -1}}, "'temperature' must be > 0"),
                                             ({"options": "temperature=3"}, "options must be a dict"),
                                             ({"method": "gdpd", "options": {"teacher_head": 1}},
                                              "teacher_head = 1 is not supported for the anytime student")])
def test_bad_settings_are_value_errors_naming_the_problem(unit_test, monkeypatch, setting, needle):
    """EarlyInputError (a ValueError) with one line, before any training."""
    from earlykd.early.estimator import EarlyClassifier, EarlyInputError
    X, y, _, _ = unit_test
    monkeypatch.setattr(EarlyClassifier, "_train_teacher", lambda *a: pytest.fail("trained before the check"))
    with pytest.raises(EarlyInputError) as info:
        EarlyClassifier(epochs=1, hidden=4, layers=1, length=32, **setting).fit(X, y)
    assert isinstance(info.value, ValueError) and needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("crossfit", [0, 2])
def test_a_class_of_one_series_gets_advice_the_estimator_accepts(unit_test, crossfit):
    """prepare's advice (val_fraction 0) is refused by the estimator, and cross-fitting needs 2 per class too."""
    X, y, _, _ = unit_test
    keep = np.r_[np.flatnonzero(y == "1"), np.flatnonzero(y == "2")[:1]]
    with pytest.raises(ValueError) as info:
        earlykd.EarlyClassifier(epochs=1, hidden=4, layers=1, length=32, crossfit=crossfit).fit(X[keep], y[keep])
    assert "class '2' has a single series" in str(info.value) and "at least 2" in str(info.value)
    assert "val_fraction=0" not in str(info.value) and "--val-fraction" not in str(info.value)


def test_too_large_a_validation_split_suggests_a_smaller_one(unit_test):
    X, y, _, _ = unit_test
    with pytest.raises(ValueError) as info:
        earlykd.EarlyClassifier(epochs=1, hidden=4, layers=1, length=32, val_fraction=0.95).fit(X, y)
    assert "use a smaller val_fraction" in str(info.value) and "val_fraction=0" not in str(info.value)


def test_auto_calibrates_every_policy_and_keeps_validations_choice(unit_test, monkeypatch):
    """policy="auto" (the default) calibrates every registered policy on the validation split and decides with
    the one of highest validation HM; a named policy is the one that decides."""
    from earlykd.decide import POLICIES, base
    X, y, Xt, _ = unit_test
    seen = {}
    real = base.best_on_validation

    def spy(policies):
        seen.update(policies)
        return real(policies)
    monkeypatch.setattr("earlykd.early.estimator.best_on_validation", spy)
    tiny = dict(hidden=4, layers=1, epochs=2, batch_size=8, levels=[0.5], length=16, threads=1)
    est = earlykd.EarlyClassifier(**tiny).fit(X, y)
    assert est.policy == "auto" and list(seen) == list(POLICIES)
    assert all(p.validation is not None for p in seen.values())
    assert est.policy_ == real(seen) and est.decider_.policy is seen[est.policy_]
    assert est.predict(Xt)[1].all()
    named = earlykd.EarlyClassifier(policy="calibrated", **tiny).fit(X, y)
    assert named.policy_ == "calibrated"
    from earlykd.early.estimator import EarlyInputError
    with pytest.raises(EarlyInputError, match="did you mean auto"):
        earlykd.EarlyClassifier(policy="autox", **tiny).fit(X, y)
