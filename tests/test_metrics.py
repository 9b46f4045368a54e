"""Metrics against values computed by hand."""
import math

import numpy as np
import pytest

from earlykd.evaluate import classification_metrics, expected_calibration_error, macro_auc_prc

# Binary case: class-1 scores 0.1, 0.4, 0.35, 0.8 for labels 0, 0, 1, 1.
# PR points of class 1 (recall, precision): (0, 1), (.5, 1), (.5, .5), (1, 2/3), (1, .5);
# trapezoid area = .5 * 1 + .5 * (.5 + 2/3) / 2 = 19/24. Class 0 mirrors it exactly.
P1 = np.array([0.1, 0.4, 0.35, 0.8])
PROBS = np.stack([1 - P1, P1], 1)
Y = np.array([0, 0, 1, 1])


def test_auc_prc_trapezoid_binary_averages_both_columns():
    assert macro_auc_prc(PROBS, Y) == pytest.approx(19 / 24)


def test_average_precision_differs_from_trapezoid():
    m = classification_metrics(PROBS, Y)
    # AP = sum (R_n - R_{n-1}) P_n = .5 * 1 + .5 * 2/3
    assert m["average_precision"] == pytest.approx(5 / 6)
    assert m["auc_prc"] == pytest.approx(19 / 24)


def test_accuracy_roc_nll():
    m = classification_metrics(PROBS, Y)
    assert m["accuracy"] == pytest.approx(0.75)          # predictions 0, 0, 0, 1
    assert m["roc_auc"] == pytest.approx(0.75)           # 3 of 4 positive-negative pairs ordered
    nll = -np.mean(np.log([0.9, 0.6, 0.35, 0.8]))
    assert m["nll"] == pytest.approx(nll)


def test_ece_by_hand():
    # confidences .9 (wrong), .9 (right), .61 (right), .71 (right): bins (.8667, .9333], (.6, .6667], (.6667, .7333]
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.61, 0.39], [0.29, 0.71]])
    y = np.array([1, 1, 0, 1])
    expected = 0.5 * abs(0.5 - 0.9) + 0.25 * abs(1 - 0.61) + 0.25 * abs(1 - 0.71)
    assert expected_calibration_error(probs, y, bins=15) == pytest.approx(expected)


def test_fidelity_top1_and_kl():
    student = np.array([[0.7, 0.3], [0.4, 0.6]])
    teacher = np.array([[0.9, 0.1], [0.8, 0.2]])
    m = classification_metrics(student, np.array([0, 0]), teacher)
    assert m["fidelity_top1"] == pytest.approx(0.5)
    kl = [0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3), 0.8 * math.log(0.8 / 0.4) + 0.2 * math.log(0.2 / 0.6)]
    assert m["fidelity_kl"] == pytest.approx(np.mean(kl))


def test_multiclass_macro_skips_absent_class():
    # class 2 never occurs in y: its one-vs-rest curve is undefined and is left out of the mean
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1]])
    y = np.array([0, 1, 0, 1])
    assert macro_auc_prc(probs, y) == pytest.approx(1.0)
    m = classification_metrics(probs, y)
    assert m["accuracy"] == 1.0 and m["roc_auc"] == pytest.approx(1.0)
