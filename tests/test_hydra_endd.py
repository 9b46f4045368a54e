"""hydra and endd: per-head targets are the right members, the EnD^2 loss on a hand-computed case, the
Dirichlet entropy and mutual information against Monte Carlo, and heads that survive a reload."""
from __future__ import annotations

import math

import pytest
import torch

from earlykd.distill import Batch, TeacherDims, TeacherOutputs, build_method
from earlykd.distill import endd, hydra
from earlykd.errors import EarlykdError
from earlykd.models import build_model

EULER = 0.5772156649015329


def members_batch(B=4, M=3, c=3, seed=0):
    """Every row has the same member logits, distinct per member."""
    g = torch.Generator().manual_seed(seed)
    per_member = torch.randn(M, c, generator=g) * 2
    members = per_member.expand(B, M, c).clone()
    log_mean = torch.logsumexp(torch.log_softmax(members, -1), 1) - math.log(M)
    teacher = TeacherOutputs(log_mean, torch.randn(B, 4), torch.randn(B, 5, 4), members)
    return Batch(torch.randn(B, 1, 8, generator=g), torch.arange(B) % c, teacher), per_member


def test_hydra_head_m_is_distilled_from_member_m():
    batch, per_member = members_batch()
    student = build_model("fcn", 1, 3, layers=1, hidden=4)
    method = build_method("hydra", student, batch.teacher.dims)
    with torch.no_grad():   # head m outputs member m's logits whatever the feature: its loss is zero
        for m, head in enumerate(method.heads):
            head.weight.zero_()
            head.bias.copy_(per_member[m])
    _, losses = method.forward_train(batch, 0)
    assert losses["hydra"].item() == pytest.approx(0, abs=1e-6)
    with torch.no_grad():   # the same heads in another order no longer match their members
        method.heads[0].bias.copy_(per_member[1])
        method.heads[1].bias.copy_(per_member[0])
    _, losses = method.forward_train(batch, 0)
    assert losses["hydra"].item() > 1e-3


def test_hydra_own_head_is_kd_on_the_ensemble_mean():
    batch, _ = members_batch()
    student = build_model("fcn", 1, 3, layers=1, hidden=4)
    method = build_method("hydra", student, batch.teacher.dims, {"temperature": 1.0})
    with torch.no_grad():
        student.head.weight.zero_()
        student.head.bias.copy_(batch.teacher.logits[0])
    _, losses = method.forward_train(batch, 0)
    assert losses["kd"].item() == pytest.approx(0, abs=1e-6)


def test_hydra_predictive_is_the_heads_mean():
    batch, per_member = members_batch()
    student = build_model("fcn", 1, 3, layers=1, hidden=4)
    method = build_method("hydra", student, batch.teacher.dims)
    with torch.no_grad():
        for m, head in enumerate(method.heads):
            head.weight.zero_()
            head.bias.copy_(per_member[m])
    out = hydra.predictive(method, batch.x)
    probs = torch.softmax(per_member, -1)
    assert torch.allclose(out.probs[0], probs.mean(0), atol=1e-6)
    expected = -(probs * probs.log()).sum(-1).mean()
    assert out.mutual_info[0].item() == pytest.approx(out.entropy[0].item() - expected.item(), abs=1e-5)
    assert out.mutual_info[0] > 0.05


def digamma_int(n: int) -> float:
    return -EULER + sum(1 / k for k in range(1, n))


def test_endd_loss_on_a_hand_computed_case():
    p1, p2 = (0.8, 0.2), (0.6, 0.4)
    members = torch.log(torch.tensor([[p1, p2]], dtype=torch.float64))      # (1, 2 members, 2 classes)
    mean = (0.7, 0.3)
    kl = [sum(m * math.log(m / p) for m, p in zip(mean, pi)) for pi in (p1, p2)]
    precision = (2 - 1) / (2 * (kl[0] + kl[1]) / 2)
    beta = [precision * m + 1 for m in mean]
    assert endd.proxy_target(members).squeeze(0).tolist() == pytest.approx(beta, rel=1e-9)
    # student concentrations (2, 3): KL(Dir(2, 3) || Dir(beta)) with digamma at integers by hand
    a, a0 = (2, 3), 5
    by_hand = (math.lgamma(a0) - sum(map(math.lgamma, a)) - math.lgamma(sum(beta)) + sum(map(math.lgamma, beta))
               + sum((ak - bk) * (digamma_int(ak) - digamma_int(a0)) for ak, bk in zip(a, beta)))
    student = build_model("fcn", 1, 2, layers=1, hidden=4)
    method = build_method("endd", student, TeacherDims(2, 4, 4, 5, members=2), {"ce_weight": 0.0})
    with torch.no_grad():
        student.head.weight.zero_()
        student.head.bias.copy_(torch.log(torch.tensor([2.0, 3.0])))
    teacher = TeacherOutputs(torch.zeros(1, 2), torch.zeros(1, 4), torch.zeros(1, 5, 4), members.float())
    _, losses = method.forward_train(Batch(torch.randn(1, 1, 8), torch.tensor([0]), teacher), 0)
    assert losses["endd"].item() == pytest.approx(by_hand, rel=1e-4)
    # the spec's argument order is an option: KL(p_i || mean)
    kl_spec = [sum(p * math.log(p / m) for m, p in zip(mean, pi)) for pi in (p1, p2)]
    spec = endd.proxy_target(members, spec_order=True).squeeze(0)
    assert spec.tolist() == pytest.approx([m / (kl_spec[0] + kl_spec[1]) + 1 for m in mean], rel=1e-9)


@pytest.mark.parametrize("alpha", [(2.0, 3.0), (0.5, 0.7, 1.2), (20.0, 1.0, 4.0, 0.3)])
def test_dirichlet_entropy_and_mutual_information_against_monte_carlo(alpha):
    alpha = torch.tensor(alpha, dtype=torch.float64)
    torch.manual_seed(0)
    pi = torch.distributions.Dirichlet(alpha).sample((400_000,)).clamp_min(1e-300)
    mc_expected_entropy = -(pi * pi.log()).sum(-1).mean()
    mean = alpha / alpha.sum()
    stats = endd.dirichlet_stats(alpha[None])
    assert torch.allclose(stats.probs[0], mean)
    assert stats.entropy.item() == pytest.approx(-(mean * mean.log()).sum().item(), abs=1e-12)
    assert stats.mutual_info.item() == pytest.approx((stats.entropy - mc_expected_entropy).item(), abs=3e-3)


def test_bad_options_and_missing_teacher_are_one_line():
    student = build_model("fcn", 1, 2, layers=1, hidden=4)
    with pytest.raises(EarlykdError, match="needs a teacher"):
        build_method("hydra", student, None)
    with pytest.raises(EarlykdError, match="plus_one must be 0 or 1"):
        build_method("endd", student, TeacherDims(2, 4, 4, 5), {"plus_one": 2})
    method = build_method("hydra", student, TeacherDims(2, 4, 4, 5, members=3))
    teacher = TeacherOutputs(torch.randn(2, 2), torch.randn(2, 4), torch.randn(2, 5, 4), torch.randn(2, 2, 2))
    with pytest.raises(EarlykdError, match="2 member"):
        method.forward_train(Batch(torch.randn(2, 1, 8), torch.tensor([0, 1]), teacher), 0)


def test_heads_survive_a_reload_from_an_ensemble_teacher(tmp_path):
    from earlykd import api, runs
    from earlykd.teacher import Teacher
    from earlykd.train.checkpoint import load_tensors
    small = dict(length=32, layers=1, hidden=8, batch_size=8, progress=False)
    run = api.train_teacher(data="UnitTest", arch="fcn", ensemble=3, epochs=2, select="acc_loss", out=tmp_path / "t",
                            **small)
    data = runs.load_prepared(Teacher.load(run.path).cfg["data"])
    for name in ("hydra", "endd"):
        student = api.distill(run, method=name, earliness=0.5, epochs=2, out=tmp_path / name, **small)
        x = data.view("test", earliness=0.5, mode=student.record["prefix_mode"])
        tensors = load_tensors(student.path / runs.MODEL_FILE)[0]
        out = (hydra if name == "hydra" else endd).predictive(student.path, x)
        assert out.probs.shape == (len(x), data.n_classes) and torch.isfinite(out.mutual_info).all()
        assert torch.allclose(out.probs.sum(1), torch.ones(len(x), dtype=out.probs.dtype), atol=1e-5)
        if name == "hydra":
            assert sum(k.startswith("hydra.heads.") for k in tensors) == 3 * 2   # weight and bias per member
            loaded = hydra.load(student.path)
            for i in range(3):
                assert torch.equal(loaded.heads[i].weight, tensors[f"hydra.heads.{i}.weight"])
        assert runs.evaluate_run(student.path) == pytest.approx(student.metrics, abs=1e-6)
