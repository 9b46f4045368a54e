"""One contract per registry, run over every entry with the importable checks of `earlykd.checks`
(methods: finite losses, gradients only where they belong, frozen teacher, uni- and multivariate, both
prefix modes, several earliness values, seeded; architectures; stopping policies), and each check shown
to fail on an entry that breaks its contract."""
from __future__ import annotations

import numpy as np
import pytest

from earlykd.checks import check_architecture, check_method, check_policy
from earlykd.decide import POLICIES
from earlykd.decide.threshold import ThresholdPolicy
from earlykd.distill import METHODS
from earlykd.distill.kd import KD
from earlykd.models import ARCHITECTURES
from earlykd.models.conv import FCN


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_contract(name):
    check_method(name)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_architecture_contract(name):
    check_architecture(name)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_contract(name):
    check_policy(name)


def unregistered(cls, **attrs):
    """A subclass of `cls` with `attrs`, registered for the check and removed afterwards."""
    return type(f"Broken{cls.__name__}", (cls,), attrs)


@pytest.fixture
def registry():
    added = []

    def add(table, key, cls):
        table[key] = cls
        added.append((table, key))
        return cls
    yield add
    for table, key in added:
        del table[key]


def test_check_method_fails_on_a_broken_method(registry):
    def leaky(self, out, batch, epoch):          # a loss that is not finite
        return {"kd": out.logits.sum() * float("nan")}
    registry(METHODS, "broken_kd", unregistered(KD, name="broken_kd", distill_losses=leaky))
    with pytest.raises(AssertionError, match="method 'broken_kd'.*not finite"):
        check_method("broken_kd")
    with pytest.raises(AssertionError, match="not registered"):
        check_method(unregistered(KD, name="elsewhere"))


def test_check_architecture_fails_when_a_case_depends_on_its_batch(registry):
    def encode(self, x):                           # subtracts the batch mean, in eval mode too
        feature, hidden = FCN.encode(self, x)
        return feature - feature.mean(0, keepdim=True), hidden
    registry(ARCHITECTURES, "batchy", unregistered(FCN, arch="batchy", encode=encode))
    with pytest.raises(AssertionError, match="architecture 'batchy'.*rest of its batch"):
        check_architecture("batchy")


def test_check_policy_fails_when_a_case_depends_on_its_batch(registry):
    def crowd(self, state, checkpoint, logits):  # stops everyone once the batch's mean confidence is high
        p = np.exp(logits - logits.max(1, keepdims=True))
        return np.full(len(logits), (p / p.sum(1, keepdims=True)).max(1).mean() > 0.7)
    registry(POLICIES, "crowd", unregistered(ThresholdPolicy, name="crowd", step=crowd))
    with pytest.raises(AssertionError, match="policy 'crowd'.*other cases"):
        check_policy("crowd")


def test_a_taken_name_is_refused_and_an_unknown_name_gets_close_matches():
    from earlykd.decide import register as register_policy
    from earlykd.distill import register
    from earlykd.errors import EarlykdError
    from earlykd.models import register_arch
    with pytest.raises(EarlykdError, match="a method named 'kd' is already registered"):
        register(unregistered(KD, name="kd"))
    with pytest.raises(EarlykdError, match="a policy named 'threshold' is already registered"):
        register_policy(unregistered(ThresholdPolicy))
    with pytest.raises(EarlykdError, match="an architecture named 'fcn' is already registered"):
        register_arch(unregistered(FCN))
    assert METHODS["kd"] is KD and POLICIES["threshold"] is ThresholdPolicy and ARCHITECTURES["fcn"] is FCN
    assert register(KD) is KD   # the same class again (a re-import) is no conflict
    for check, what in ((check_method, "method"), (check_architecture, "architecture"), (check_policy, "policy")):
        with pytest.raises(AssertionError, match=f"{what} 'kdd' is not registered"):
            check("kdd")


def test_fitnets_warm_up_trains_without_cross_entropy_and_says_so():
    from earlykd.distill import build_method
    from earlykd.distill.base import TeacherDims
    student = FCN(1, 2, 1, 4)
    dims = TeacherDims(n_classes=2, feature_dim=4, hidden_dim=4, steps=8)
    plain = build_method("fitnets", student, dims, warmup=3)
    assert not plain.trains_ce(0) and plain.trains_ce(3)
    assert build_method("fitnets", student, dims, {"ce_in_warmup": 1}, warmup=3).trains_ce(0)
