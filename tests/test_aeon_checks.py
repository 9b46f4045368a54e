"""aeon's own estimator checks on earlykd.EarlyClassifier (tiny settings from `_get_test_params`).

Checks that cannot apply are skipped with the reason (the same table is in docs/early.md)."""
from __future__ import annotations

import pytest
from aeon.testing.estimator_checking import parametrize_with_checks

from earlykd import EarlyClassifier

NOT_APPLICABLE = {
    "check_non_state_changing_method":
        "aeon's early-classifier contract has predict set state_info (check_early_classifier_output "
        "requires it); run below with state_info exempted, as aeon excludes it for TEASER and "
        "ProbabilityThresholdEarlyClassifier",
    "check_early_classifier_against_expected_results":
        "compares with probabilities aeon stored for its own estimators; it has none for EarlyClassifier "
        "and returns without comparing (determinism is checked by check_fit_deterministic)",
}


def _name(check) -> str:
    return getattr(check, "func", check).__name__


@parametrize_with_checks([EarlyClassifier])
def test_aeon_estimator_checks(check):
    if _name(check) in NOT_APPLICABLE:
        pytest.skip(NOT_APPLICABLE[_name(check)])
    check()


def test_predict_changes_nothing_but_state_info(monkeypatch):
    """aeon's check_non_state_changing_method, with the one attribute the contract makes predict set."""
    from aeon.testing.estimator_checking import _yield_estimator_checks as checks
    changed = checks._changed_state
    monkeypatch.setattr(checks, "_changed_state", lambda before, est: changed(before, est) - {"state_info"})
    for params in EarlyClassifier._get_test_params():
        checks.check_non_state_changing_method(EarlyClassifier(**params), "EqualLengthUnivariate-Classification-numpy3D")


def test_only_named_checks_are_skipped_and_most_run():
    """The skip list names checks aeon really yields for EarlyClassifier (a stale or misspelt entry would hide
    nothing and mean nothing), and it stays a small minority of them."""
    from aeon.testing.estimator_checking._yield_estimator_checks import _yield_all_aeon_checks
    names = {_name(check) for check in _yield_all_aeon_checks(EarlyClassifier)}
    assert set(NOT_APPLICABLE) <= names
    assert len(names - set(NOT_APPLICABLE)) >= 15


def test_the_checks_run_every_registered_policy_and_the_default():
    from earlykd.decide import POLICIES
    default = EarlyClassifier().policy
    assert default == "auto"
    assert {p.get("policy", default) for p in EarlyClassifier._get_test_params()} == set(POLICIES) | {"auto"}
