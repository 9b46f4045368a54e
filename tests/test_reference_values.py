"""Baselines against values worked out by hand from their reference formulas (issue 8, part 2).

Every expected number below is computed in the test from the reference definition with plain Python,
on tensors small enough to check on paper; the code under test only produces the value compared."""
import math

import pytest
import torch
from torch import nn

from earlykd.distill import METHODS, Batch, TeacherDims, TeacherOutputs, build_method
from earlykd.distill.at import at_loss
from earlykd.distill.base import pair_steps
from earlykd.distill.dt2w import dt2w_loss, subsample_channels
from earlykd.distill.fitnets import hint_loss
from earlykd.distill.gdpd import Bottleneck, Denoiser, NoiseAdapter
from earlykd.distill.pkt import pkt_loss
from earlykd.distill.tekap import perturb, tekap_kd
from earlykd.models import build_model

f64 = torch.float64


def tensor(values):
    return torch.tensor(values, dtype=f64)


def kl_tempered(student, teacher, tau):
    """tau^2 KL(softmax(teacher / tau) || softmax(student / tau)) for one row of plain floats."""
    def softmax(z):
        e = [math.exp(v / tau) for v in z]
        return [v / sum(e) for v in e]
    p_s, p_t = softmax(student), softmax(teacher)
    return tau * tau * sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))


def lstm_student(hidden=4, channels=1, classes=3, seed=0):
    torch.manual_seed(seed)
    return build_model("lstm", channels, classes, 1, hidden)


def teacher_batch(n=4, steps=6, width=5, classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    teacher = TeacherOutputs(torch.randn(n, classes, generator=g), torch.randn(n, width, generator=g),
                             torch.randn(n, steps, width, generator=g))
    return Batch(torch.randn(n, 1, steps, generator=g), torch.arange(n) % classes, teacher)


# ---- the time pairing helper ----

def test_pair_steps_uses_the_teachers_first_steps_for_a_shorter_student():
    s, t = tensor([[[1.0], [2.0]]]), tensor([[[10.0], [20.0], [30.0], [40.0], [50.0]]])
    got_s, got_t = pair_steps(s, t)
    assert got_s is s and got_t.flatten().tolist() == [10.0, 20.0]
    same = tensor([[[7.0]] * 5])
    assert pair_steps(same, t)[0] is same and pair_steps(same, t)[1] is t
    warped, _ = pair_steps(s, t, warp=True)          # 1 .. 2 over 5 steps
    assert warped.flatten().tolist() == [1.0, 1.25, 1.5, 1.75, 2.0]


# ---- AT and FitNets in truncate mode ----

def test_at_truncated_student_against_the_teachers_first_steps():
    s = tensor([[[1.0], [0.0]]])                                     # map (1, 0)
    t = tensor([[[1.0, 1.0], [1.0, 1.0], [3.0, 3.0], [0.0, 2.0]]])  # map (1, 1, 9, 2): first two (1, 1)
    r = 1 / math.sqrt(2)
    expected = ((1 - r) ** 2 + (0 - r) ** 2) / 2
    assert math.isclose(at_loss(s, t).item(), expected, rel_tol=1e-12)


def test_fitnets_hint_by_hand_on_the_teachers_first_steps():
    regressor = nn.Linear(2, 3, bias=False).double()
    with torch.no_grad():
        regressor.weight.copy_(tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
    s = tensor([[[1.0, 2.0], [3.0, 0.0]]])                           # W s = (1, 4, 3), (3, 0, 3)
    t = tensor([[[1.0, 4.0, 0.0], [3.0, 1.0, 3.0], [9.0, 9.0, 9.0]]])
    # differences (0, 0, 3) and (0, -1, 0): squares 9 + 1 over 6 entries
    assert math.isclose(hint_loss(regressor, s, t).item(), 10 / 6, rel_tol=1e-12)


# ---- FitNets: the release's schedule and regressor ----

def test_fitnets_warmup_is_hint_only_then_ce_only():
    batch = teacher_batch()
    method = build_method("fitnets", lstm_student(), batch.teacher.dims, {"weight": 2.0}, warmup=3)
    assert method.regressor.bias is None and method.regressor.weight.abs().max() <= 0.005
    _, early = method.forward_train(batch, 2)
    assert set(early) == {"hint"}
    logits, late = method.forward_train(batch, 3)
    assert set(late) == {"ce"}
    rows = logits.tolist()
    ce = sum(math.log(sum(math.exp(v) for v in row)) - row[y] for row, y in zip(rows, batch.y.tolist())) / 4
    assert math.isclose(late["ce"].item(), ce, rel_tol=1e-5)
    kept = build_method("fitnets", lstm_student(), batch.teacher.dims, {"ce_in_warmup": 1}, warmup=3)
    assert set(kept.forward_train(batch, 2)[1]) == {"hint", "ce"}


# ---- PKT: RepDistiller's normalisation and weight ----

def test_pkt_is_the_mean_over_all_entries_with_weight_30000():
    s = tensor([[1.0, 0.0], [0.0, 1.0]])   # cos 0 -> kernel 1/2: rows (1, 1/2) / 1.5 = (2/3, 1/3), (1/3, 2/3)
    t = tensor([[1.0, 0.0], [1.0, 0.0]])   # cos 1 -> kernel 1: rows (1/2, 1/2)
    row = 0.5 * math.log(0.5 / (2 / 3)) + 0.5 * math.log(0.5 / (1 / 3))
    assert math.isclose(pkt_loss(s, t).item(), 2 * row / 4, rel_tol=1e-6)
    assert METHODS["pkt"].defaults["weight"] == 30000.0


# ---- TeKAP: the official perturbation and per-view KD terms ----

def test_tekap_views_are_point_nine_z_plus_point_one_noise():
    torch.manual_seed(0)
    views = perturb(torch.full((2, 20000), 10.0), 3)
    assert views.shape == (3, 2, 20000)
    assert abs(views.mean().item() - 9.0) < 0.01 and abs(views.std().item() - 0.1) < 0.01


def test_tekap_kd_by_hand():
    s, t = [0.0, 0.0], [2.0, 0.0]
    torch.manual_seed(3)
    noise = torch.randn(1, 1, 2, dtype=f64)[0, 0].tolist()
    view = [0.9 * a + 0.1 * n for a, n in zip(t, noise)]
    expected = kl_tempered(s, t, 2.0) + 0.8 * kl_tempered(s, view, 2.0)
    torch.manual_seed(3)
    got = tekap_kd(tensor([s]), tensor([t]), perturb(tensor([t]), 1), 2.0, 0.8)
    assert math.isclose(got.item(), expected, rel_tol=1e-12)
    defaults = METHODS["tekap"].defaults
    assert defaults["view_weight"] == 0.8 and defaults["feature_weight"] == 0


# ---- DT2W: after the warm-up, random teacher channels per batch ----

def test_dt2w_soft_dtw_by_hand_on_the_teachers_first_steps():
    s = tensor([[[0.0], [1.0]]])
    t = tensor([[[0.0], [2.0], [5.0]]])   # one channel; a truncated student sees the first two steps
    # costs (0, 4; 1, 1): R11 = 0, R12 = 4, R21 = 1, R22 = 1 + softmin(0, 4, 1) with gamma 1
    expected = 1 - math.log(1 + math.exp(-4) + math.exp(-1))
    assert math.isclose(dt2w_loss(s, t, 1.0).item(), expected, rel_tol=1e-9)


def test_dt2w_channels_drawn_per_batch_under_the_seed():
    t = torch.arange(6.0).expand(2, 3, 6)
    torch.manual_seed(5)
    expected = torch.randperm(6)[:4].tolist()
    torch.manual_seed(5)
    assert subsample_channels(t, 4)[0, 0].tolist() == [float(i) for i in expected]


def test_dt2w_term_only_after_the_warmup():
    batch = teacher_batch()
    method = build_method("dt2w", lstm_student(), batch.teacher.dims, warmup=3)
    assert method.two_stage and method.warmup == 3
    assert set(method.forward_train(batch, 2)[1]) == {"ce"}
    assert set(method.forward_train(batch, 3)[1]) == {"ce", "dt2w"}
    joint = build_method("dt2w", lstm_student(), batch.teacher.dims, {"joint": 1}, warmup=3)
    assert joint.warmup == 0 and set(joint.forward_train(batch, 0)[1]) == {"ce", "dt2w"}


# ---- GDPD: denoiser and noise adapter as released ----

def set_batch_norms(module, bias=0.0):
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d):   # eval mode: running mean 0, variance 1
            m.weight.data.fill_(1.0)
            m.bias.data.fill_(bias)


def test_gdpd_denoiser_bottlenecks_projection_and_batch_norm_by_hand():
    d = Denoiser(4, timesteps=10).eval()
    with torch.no_grad():
        for m in d.modules():
            if isinstance(m, nn.Linear):
                m.weight.zero_()
                m.bias.zero_()
        set_batch_norms(d)
        d.time.weight.copy_(torch.arange(40.0).view(10, 4) / 10)
        blocks = [m for m in d.modules() if isinstance(m, Bottleneck)]
        assert len(blocks) == 2
        for block in blocks:
            assert isinstance(block.body[-1], nn.BatchNorm1d)   # the output batch norm of each bottleneck
            block.body[-1].bias.fill_(0.1)
        projection, norm = list(d.blocks)[-2:]
        projection.weight.copy_(torch.eye(4))
        norm.weight.fill_(2.0)
        norm.bias.fill_(0.5)
        out = d(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), 3)
    # x + embedding row 3 = (2.2, 3.3, 4.4, 5.5); two bottlenecks add 0.1 each; then 2 v / sqrt(1 + 1e-5) + 0.5
    expected = [2 * (v + 0.2) / math.sqrt(1 + 1e-5) + 0.5 for v in (2.2, 3.3, 4.4, 5.5)]
    assert out.flatten().tolist() == pytest.approx(expected, rel=1e-6)


def test_gdpd_noise_adapter_reads_the_latent_with_reduction_8():
    torch.manual_seed(0)
    student = build_model("lstm", 1, 3, 1, 16)
    d = build_method("gdpd", student, TeacherDims(3, 24, 24, 30), {"steps": 0}).eval()
    adapter = d.adapter
    assert isinstance(adapter, NoiseAdapter)
    bottleneck = adapter.net[0]
    assert bottleneck.body[0].out_features == 16 // 8 and isinstance(bottleneck.body[-1], nn.BatchNorm1d)
    with torch.no_grad():
        for m in bottleneck.modules():
            if isinstance(m, nn.Linear):
                m.weight.zero_()
                m.bias.zero_()
        set_batch_norms(bottleneck, 0.1)                 # the bottleneck returns z + 0.1
        head = adapter.net[1]
        head.weight.zero_()
        head.bias.zero_()
        head.weight[0, 0] = head.weight[1, 1] = 1.0       # logits (z0 + 0.1, z1 + 0.1)
        d.to_latent.weight.copy_(2 * torch.eye(16))
        d.to_latent.bias.fill_(1.0)                       # z = 2 f + 1
    f = torch.tensor([[0.5, -0.25] + [0.0] * 14, [-1.0, 0.0] + [0.0] * 14])
    z = 2 * f + 1
    alpha = [1 / (1 + math.exp(-(2 * a - 2 * b))) for a, b in f[:, :2].tolist()]   # sigmoid(z0 - z1)
    torch.manual_seed(9)
    got = d.hint(f)
    torch.manual_seed(9)
    noise = torch.randn(2, 16)
    fused = torch.stack([a * z[i] + (1 - a) * noise[i] for i, a in enumerate(alpha)])
    torch.testing.assert_close(got, d.project(fused))


# ---- gdpd_kd: GDPD + lambda KD, as the release trains it ----

def test_gdpd_kd_adds_lambda_kd_in_both_stages():
    batch = teacher_batch(width=16)
    for epoch, stage in ((0, {"diffusion", "recon"}), (2, {"hint"})):
        torch.manual_seed(4)
        method = build_method("gdpd_kd", lstm_student(16), batch.teacher.dims, {"weight": 0.5}, warmup=2)
        torch.manual_seed(5)
        logits, losses = method.forward_train(batch, epoch)
        assert set(losses) == {"ce", "kd"} | stage
        rows, targets = logits.tolist(), batch.teacher.logits.tolist()
        kd = sum(kl_tempered(s, t, 2.0) for s, t in zip(rows, targets)) / len(rows)
        assert math.isclose(losses["kd"].item(), 0.5 * kd, rel_tol=1e-5)
        torch.manual_seed(4)
        plain = build_method("gdpd", lstm_student(16), batch.teacher.dims, {"weight": 0.5}, warmup=2)
        torch.manual_seed(5)
        _, alone = plain.forward_train(batch, epoch)
        assert set(alone) == set(losses) - {"kd"}
        for key, value in alone.items():
            torch.testing.assert_close(losses[key], value)
