"""Stopping policies: aeon's threshold rule, temperature calibration, validation-only search by HM."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from earlykd.decide import build_policy, first_stops, harmonic_mean
from earlykd.decide.calibrated import fit_temperature
from earlykd.errors import EarlykdError


def logits_of(probs) -> np.ndarray:
    """Logits whose softmax gives `probs` (checkpoints, cases, classes)."""
    return np.log(np.asarray(probs, dtype=np.float64))


def test_harmonic_mean():
    assert harmonic_mean(1.0, 0.0) == 1.0
    assert harmonic_mean(0.5, 0.5) == pytest.approx(0.5)
    assert harmonic_mean(0.9, 0.4) == pytest.approx(2 * 0.9 * 0.6 / 1.5)
    assert harmonic_mean(0.0, 1.0) == 0.0


def test_threshold_counts_consecutive_agreeing_checkpoints_like_aeon():
    # three cases over four checkpoints, two classes; p = 0.8, k = 2
    probs = [
        [[0.9, 0.1], [0.9, 0.1], [0.3, 0.7]],   # checkpoint 0
        [[0.1, 0.9], [0.7, 0.3], [0.3, 0.7]],   # 1: case 0 switches class, case 1 drops below p
        [[0.1, 0.9], [0.9, 0.1], [0.3, 0.7]],   # 2: case 0 agrees twice -> stops; case 1 restarts at 1
        [[0.1, 0.9], [0.9, 0.1], [0.3, 0.7]],   # 3 (last): case 1 reaches 2; case 2 never confident but forced
    ]
    policy = build_policy({"name": "threshold", "params": {"probability": 0.8, "consecutive": 2}})
    assert first_stops(policy, logits_of(probs)).tolist() == [2, 3, 3]
    single = build_policy({"name": "threshold", "params": {"probability": 0.8, "consecutive": 1}})
    assert first_stops(single, logits_of(probs)).tolist() == [0, 0, 3]


@pytest.mark.parametrize("name", ["calibrated", "elects", "threshold", "uncertainty"])
def test_the_built_in_policies_wait_on_uniform_predictions_until_the_last_checkpoint(name):
    """Confidence policies (and ELECTS' head, set never to fire) never stop on a uniform prediction, and the last
    checkpoint decides. (check_policy holds every registered policy, new ones too, to deciding by the last.)"""
    never = logits_of(np.full((3, 5, 4), 0.25))  # uniform: no policy is ever confident
    policy = build_policy(name).calibrate(never, np.zeros(5, dtype=int), np.array([0.2, 0.5, 1.0]))
    if name == "elects":  # not confidence-based (the argmax is always right here): make its head never fire
        policy.params.update(bias=-50.0)
    assert (first_stops(policy, never) == 2).all()


def test_threshold_calibration_maximises_validation_hm():
    rng = np.random.default_rng(0)
    checkpoints, cases, classes = 6, 40, 3
    y = rng.integers(classes, size=cases)
    logits = rng.normal(size=(checkpoints, cases, classes))
    logits[np.arange(checkpoints)[:, None], np.arange(cases), y] += np.linspace(0, 4, checkpoints)[:, None]
    earliness = np.linspace(1 / checkpoints, 1, checkpoints)
    policy = build_policy("threshold").calibrate(logits, y, earliness)
    best = max(build_policy({"name": "threshold", "params": c}).score(logits, y, earliness)[0]
               for c in policy.candidates())
    assert policy.validation["hm"] == pytest.approx(best)
    assert policy.score(logits, y, earliness)[0] == pytest.approx(best)


def test_temperature_is_recovered():
    rng = np.random.default_rng(1)
    true = rng.normal(scale=2.0, size=(4000, 3))
    p = np.exp(true) / np.exp(true).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    assert fit_temperature(true * 3.0, y) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(true, y) == pytest.approx(1.0, rel=0.1)


def test_calibrated_policy_uses_per_checkpoint_temperatures():
    rng = np.random.default_rng(2)
    y = rng.integers(2, size=200)
    base = rng.normal(size=(2, 200, 2))
    base[:, np.arange(200), y] += 1.0
    over = base * np.array([5.0, 1.0])[:, None, None]  # checkpoint 0 overconfident, 1 calibrated
    policy = build_policy("calibrated").calibrate(over, y, np.array([0.5, 1.0]))
    t0, t1 = policy.params["temperatures"]
    assert t0 > 2.5 * t1
    assert policy.params["target"] in [c["target"] for c in policy.candidates()]
    stored = build_policy(policy.to_dict())
    assert (first_stops(stored, over) == first_stops(policy, over)).all()


def test_policy_grid_search_beats_every_fixed_setting():
    rng = np.random.default_rng(3)
    y = rng.integers(2, size=30)
    logits = rng.normal(size=(5, 30, 2))
    logits[np.arange(5)[:, None], np.arange(30), y] += np.array([0.2, 1, 2, 3, 4])[:, None]
    earliness = np.array([0.2, 0.4, 0.6, 0.8, 1.0])
    chosen = build_policy("threshold").calibrate(logits, y, earliness).validation["hm"]
    for p, k in itertools.product((0.6, 0.9, 0.99), (1, 3)):
        fixed = build_policy({"name": "threshold", "params": {"probability": p, "consecutive": k}})
        assert chosen >= fixed.score(logits, y, earliness)[0] - 1e-12


def test_unknown_policy_and_setting_are_named():
    with pytest.raises(EarlykdError, match="unknown policy 'treshold'.*threshold"):
        build_policy("treshold")
    with pytest.raises(EarlykdError, match="unknown setting 'prob'"):
        build_policy({"name": "threshold", "params": {"prob": 0.5}})


def _noise(cases=30, checkpoints=6, classes=3, seed=0):
    """Logits that carry no information about the labels, and labels."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 2, (checkpoints, cases, classes)), rng.integers(0, classes, cases),
            np.linspace(0.1, 1.0, checkpoints))


def test_cross_validated_hm_is_each_fold_decided_by_the_policy_calibrated_on_the_others():
    from earlykd.decide.base import cross_validated, folds_of
    logits, y, earliness = _noise()
    got = cross_validated("threshold", {}, logits, y, earliness, folds=5)
    right, spent = np.zeros(len(y)), np.zeros(len(y))
    for f in range(5):   # by hand
        held, fit = np.flatnonzero(folds_of(y, 5) == f), np.flatnonzero(folds_of(y, 5) != f)
        policy = build_policy("threshold").calibrate(logits[:, fit], y[fit], earliness)
        stops = first_stops(policy, logits[:, held])
        right[held] = logits[stops, held].argmax(-1) == y[held]
        spent[held] = earliness[stops]
    assert got == pytest.approx({"cv_hm": harmonic_mean(right.mean(), spent.mean()), "cv_accuracy": right.mean(),
                                 "cv_earliness": spent.mean()})


def _weak_signal(seed: int, cases=30, checkpoints=6, classes=3):
    """Logits whose evidence for the true class grows over the checkpoints, under noise; labels; earliness."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, cases)
    signal = np.linspace(0.2, 2.0, checkpoints)[:, None, None] * np.eye(classes)[y][None]
    return rng.normal(0, 1.5, (checkpoints, cases, classes)) + signal, y, np.linspace(0.1, 1.0, checkpoints)


@pytest.mark.parametrize("name", ["threshold", "calibrated", "elects", "uncertainty"])
def test_cross_validated_hm_does_not_share_the_searchs_optimism(name):
    """A policy's search finds the settings that look best on the cases it searched; decided out of fold, the
    same search scores lower on average over draws."""
    from earlykd.decide import calibrate_policies
    own, crossed = [], []
    for seed in range(6):
        val = calibrate_policies([name], *_weak_signal(seed))[name].validation
        own.append(val["hm"])
        crossed.append(val["cv_hm"])
    assert np.mean(crossed) < np.mean(own) - 0.005


def test_cross_validated_hm_needs_two_cases_and_passes_ready_per_case():
    from earlykd.decide.base import cross_validated
    logits, y, earliness = _noise(cases=1)
    assert cross_validated("threshold", {}, logits, y, earliness)["cv_hm"] is None
    logits, y, earliness = _noise()
    late = np.full(len(y), len(earliness) - 1)   # no case holds a value before the last checkpoint
    assert cross_validated("threshold", {}, logits, y, earliness, ready=late)["cv_earliness"] == pytest.approx(1.0)


def test_cross_validated_hm_with_one_case_per_class_still_holds_each_case_out():
    from earlykd.decide.base import cross_validated
    logits, _, earliness = _weak_signal(0, cases=4, classes=4)
    got = cross_validated("uncertainty", {}, logits, np.arange(4), earliness)
    assert 0.0 <= got["cv_hm"] <= 1.0
