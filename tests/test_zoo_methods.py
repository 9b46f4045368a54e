"""Property tests for the zoo of distillation methods (rkd, at, dkd, dt2w, vid, pkt, tekap, ttm)."""
import importlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from earlykd.distill import METHODS, Batch, TeacherOutputs, build_method
from earlykd.distill.at import at_loss
from earlykd.distill.dkd import dkd_loss, dkd_parts
from earlykd.distill.dt2w import dt2w_loss, subsample_channels
from earlykd.distill.kd import soft_kl
from earlykd.distill.pkt import pkt_loss
from earlykd.distill.rkd import rkd_losses
from earlykd.distill.softdtw import soft_dtw
from earlykd.distill.tekap import perturb, tekap_feature, tekap_kd
from earlykd.distill.ttm import ttm_loss
from earlykd.distill.vid import gaussian_nll
from earlykd.models import build_model

ZOO = ["rkd", "at", "dkd", "dt2w", "vid", "pkt", "tekap", "ttm"]
f64 = torch.float64


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def randn(*shape):
    return torch.randn(*shape, dtype=f64)


# ---- registry and end-to-end shape handling ----

@pytest.mark.parametrize("name", ZOO)
def test_registered_with_numeric_defaults(name):
    cls = METHODS[name]
    assert cls.name == name and cls.description and "\n" not in cls.description
    assert "weight" in cls.defaults
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in cls.defaults.values())
    doc = importlib.import_module(cls.__module__).__doc__
    assert cls.__module__.endswith(name) and "loss" in doc and "20" in doc   # formula, paper year


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("arch,batch_size", [("lstm", 1), ("lstm", 2), ("lstm", 5), ("fcn", 3)])
def test_finite_loss_and_grads_with_mismatched_widths_and_lengths(name, arch, batch_size):
    """Student width 6 vs teacher 9 (hidden 11), student T = 4 (truncated prefix) vs teacher T = 10."""
    student = build_model(arch, in_channels=2, n_classes=3, layers=1, hidden=6)
    teacher = TeacherOutputs(randn(batch_size, 3).float(), randn(batch_size, 9).float(), randn(batch_size, 10, 11).float())
    method = build_method(name, student, teacher.dims)
    batch = Batch(torch.randn(batch_size, 2, 4), torch.arange(batch_size) % 3, teacher)
    logits, losses = method.forward_train(batch, epoch=0)
    assert logits.shape == (batch_size, 3) and set(losses) > {"ce"}
    total = sum(losses.values())
    assert torch.isfinite(total), losses
    total.backward()
    grads = [p.grad for p in method.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ZOO)
def test_weight_scales_the_distillation_terms(name):
    student = build_model("lstm", in_channels=1, n_classes=3, layers=1, hidden=5)
    teacher = TeacherOutputs(torch.randn(4, 3), torch.randn(4, 7), torch.randn(4, 9, 7))
    batch = Batch(torch.randn(4, 1, 6), torch.tensor([0, 1, 2, 0]), teacher)
    terms = {}
    for weight in (1.0, 3.0):
        torch.manual_seed(1)
        method = build_method(name, student, teacher.dims, {"weight": weight})
        torch.manual_seed(2)
        _, losses = method.forward_train(batch, 0)
        terms[weight] = {k: v for k, v in losses.items() if k != "ce" and not k.endswith("feature")}
    for key, value in terms[1.0].items():
        assert torch.allclose(terms[3.0][key], 3 * value, rtol=1e-5), key


# ---- rkd ----

def test_rkd_invariant_to_feature_scale_and_zero_for_isometric_features():
    s, t = randn(6, 4), randn(6, 5)
    distance, angle = rkd_losses(s, t)
    assert distance > 0 and angle > 0
    scaled = rkd_losses(7.0 * s, 0.3 * t)
    assert torch.allclose(scaled[0], distance) and torch.allclose(scaled[1], angle)
    # the teacher's features rotated and embedded in a wider space have identical relations
    rotation, _ = torch.linalg.qr(randn(5, 5))
    wider = torch.cat([3.0 * t @ rotation, torch.zeros(6, 2, dtype=f64)], 1)
    assert all(part.abs() < 1e-12 for part in rkd_losses(wider, t))


def test_rkd_distance_matches_hand_computation_for_three_points():
    s = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=f64)   # distances 1, 1, sqrt 2
    t = torch.tensor([[0.0], [1.0], [2.0]], dtype=f64)                 # distances 1, 1, 2
    mean_s, mean_t = (2 + math.sqrt(2)) / 3, 4 / 3
    pairs = [(1, 1), (1, 2), (math.sqrt(2), 1)]                        # pairs 01, 02, 12
    diffs = [a / mean_s - b / mean_t for a, b in pairs] * 2 + [0.0] * 3
    huber = [0.5 * d * d if abs(d) < 1 else abs(d) - 0.5 for d in diffs]
    distance, _ = rkd_losses(s, t)
    assert torch.isclose(distance, torch.tensor(sum(huber) / 9, dtype=f64))


def test_rkd_angle_matches_triplet_loop():
    def cosines(x):
        out = np.zeros((len(x),) * 3)
        for j in range(len(x)):
            for i in range(len(x)):
                for k in range(len(x)):
                    a, b = x[i] - x[j], x[k] - x[j]
                    if np.linalg.norm(a) > 0 and np.linalg.norm(b) > 0:
                        out[j, i, k] = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
        return out
    s, t = randn(5, 3), randn(5, 4)
    diff = np.abs(cosines(s.numpy()) - cosines(t.numpy()))
    expected = np.where(diff < 1, 0.5 * diff ** 2, diff - 0.5).mean()
    assert math.isclose(rkd_losses(s, t)[1].item(), expected, rel_tol=1e-9)


def test_rkd_batch_of_two_and_identical_features_are_finite():
    for s in (randn(2, 3), torch.ones(3, 3, dtype=f64)):
        s.requires_grad_(True)
        loss = sum(rkd_losses(s, randn(s.shape[0], 4)))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


# ---- at ----

def test_at_zero_for_identical_sequences_and_positive_otherwise():
    h = randn(3, 7, 5)
    assert at_loss(h, h) == 0
    assert at_loss(h, randn(3, 7, 5)) > 0


def test_at_aligns_lengths_and_widths():
    def seq(energy, width):
        return energy.sqrt()[None, :, None].expand(2, len(energy), width)
    teacher = seq(torch.linspace(1, 2, 9, dtype=f64), 8)
    # a truncated 4-step student is compared with the teacher's first 4 steps, whatever comes after
    assert at_loss(seq(torch.linspace(1, 2, 9, dtype=f64)[:4], 3), teacher) < 1e-20
    assert at_loss(seq(torch.linspace(1, 2, 9, dtype=f64)[:4], 3), teacher.flip(1)) > 1e-4
    # time_warp: energy linear in time, so interpolating a 4-step map reproduces the whole 9-step map
    assert at_loss(seq(torch.linspace(1, 2, 4, dtype=f64), 3), teacher, warp=True) < 1e-20


def test_at_matches_hand_computation():
    s = torch.tensor([[[1.0], [0.0]]], dtype=f64)                 # map (1, 0)
    t = torch.tensor([[[1.0, 1.0], [1.0, 1.0]]], dtype=f64)       # map (1, 1) -> (1, 1) / sqrt 2
    expected = ((1 - 1 / math.sqrt(2)) ** 2 + 0.5) / 2
    assert torch.isclose(at_loss(s, t), torch.tensor(expected, dtype=f64))


# ---- dkd ----

def test_dkd_parts_recombine_to_classical_kd():
    s, t, y, tau = randn(6, 5), randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0]), 2.0
    tckd, nckd = dkd_parts(s, t, y, tau)
    p_t = F.softmax(t / tau, 1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / tau, 1))).sum(1)
    assert torch.allclose(tckd + (1 - p_t[torch.arange(6), y]) * nckd, kl)
    assert torch.isclose(dkd_loss(s, t, y, 1.0, 8.0, tau), tau ** 2 * (tckd + 8 * nckd).mean())


def test_dkd_matches_hand_computation():
    s, t, y = [1.0, 2.0, 0.5], [3.0, 0.0, 1.0], 0
    softmax = lambda z: [math.exp(v) / sum(math.exp(u) for u in z) for v in z]  # noqa: E731
    p_s, p_t = softmax([v / 2 for v in s]), softmax([v / 2 for v in t])
    kl = lambda p, q: sum(a * math.log(a / b) for a, b in zip(p, q))  # noqa: E731
    tckd = kl([p_t[0], 1 - p_t[0]], [p_s[0], 1 - p_s[0]])
    nckd = kl(softmax([t[1] / 2, t[2] / 2]), softmax([s[1] / 2, s[2] / 2]))
    loss = dkd_loss(torch.tensor([s], dtype=f64), torch.tensor([t], dtype=f64), torch.tensor([y]), 1.0, 8.0, 2.0)
    assert math.isclose(loss.item(), 4 * (tckd + 8 * nckd), rel_tol=1e-12)


def test_dkd_two_classes_has_no_non_target_term():
    _, nckd = dkd_parts(randn(4, 2), randn(4, 2), torch.tensor([0, 1, 1, 0]), 2.0)
    assert torch.equal(nckd, torch.zeros(4, dtype=f64))


# ---- dt2w / soft-DTW ----

def soft_dtw_reference(x, y, gamma):
    """Plain double loop (Cuturi & Blondel 2017, Algorithm 1); gamma = 0 gives hard DTW."""
    n, m = len(x), len(y)
    r = np.full((n + 1, m + 1), np.inf)
    r[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            prev = np.array([r[i - 1, j - 1], r[i - 1, j], r[i, j - 1]])
            if gamma == 0:
                smin = prev.min()
            else:
                low = prev.min()
                smin = low - gamma * np.log(np.exp(-(prev - low) / gamma).sum())
            r[i, j] = ((x[i - 1] - y[j - 1]) ** 2).sum() + smin
    return r[n, m]


@pytest.mark.parametrize("n,m", [(5, 7), (7, 5), (1, 4), (4, 1), (1, 1), (6, 6)])
@pytest.mark.parametrize("gamma", [0.1, 1.2])
def test_soft_dtw_matches_reference(n, m, gamma):
    x, y = randn(3, n, 4), randn(3, m, 4)
    ours = soft_dtw(x, y, gamma)
    ref = [soft_dtw_reference(x[b].numpy(), y[b].numpy(), gamma) for b in range(3)]
    assert np.allclose(ours.numpy(), ref, atol=1e-5, rtol=0)


def test_soft_dtw_approaches_hard_dtw_and_has_correct_gradients():
    x, y = randn(2, 6, 3), randn(2, 8, 3)
    hard = [soft_dtw_reference(x[b].numpy(), y[b].numpy(), 0) for b in range(2)]
    assert np.allclose(soft_dtw(x, y, 1e-3).numpy(), hard, atol=1e-2)
    assert soft_dtw(randn(1, 5, 2).expand(2, 5, 2), randn(1, 5, 2).expand(2, 5, 2), 1e-3).std() < 1e-12
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: soft_dtw(a, y, 1.2), (x,))


def test_dt2w_subsamples_teacher_channels_and_handles_lengths():
    t = randn(2, 9, 8)
    assert torch.equal(subsample_channels(t, 8, random=False), t)
    assert torch.equal(subsample_channels(t, 3, random=False), t[:, :, [0, 4, 7]])   # round(0, 3.5, 7)
    assert subsample_channels(t, 12).shape == (2, 9, 12)
    assert sorted(subsample_channels(torch.arange(8.0)[None, None], 8)[0, 0].tolist()) == list(range(8))
    picked = subsample_channels(torch.arange(3.0)[None, None], 7)[0, 0].tolist()
    assert sorted(picked[:3]) == sorted(picked[3:6]) == [0, 1, 2]        # repeats only past the width
    s = randn(2, 4, 3)
    assert torch.isclose(dt2w_loss(s, t, 1.2, random=False, warp=True), soft_dtw(s, t[:, :, [0, 4, 7]], 1.2).mean())
    assert torch.isclose(dt2w_loss(s, t, 1.2, random=False), soft_dtw(s, t[:, :4, [0, 4, 7]], 1.2).mean())
    # a student sequence that is the teacher's with each step repeated aligns at zero hard-DTW cost
    assert dt2w_loss(t.repeat_interleave(2, 1), t, 1e-4, random=False).abs() < 1e-2


# ---- vid ----

def test_vid_nll_matches_hand_computation():
    mean = torch.tensor([[0.0, 1.0]], dtype=f64)
    target = torch.tensor([[1.0, 3.0]], dtype=f64)
    variance = torch.tensor([2.0, 0.5], dtype=f64)
    expected = 0.5 * ((1 / 2 + math.log(2)) + (4 / 0.5 + math.log(0.5))) / 2
    assert math.isclose(gaussian_nll(mean, variance, target).item(), expected, rel_tol=1e-12)


def test_vid_module_uses_softplus_variance_and_regressor():
    student = build_model("lstm", in_channels=1, n_classes=2, layers=1, hidden=4)
    teacher = TeacherOutputs(torch.randn(3, 2), torch.randn(3, 6), torch.randn(3, 5, 6))
    method = build_method("vid", student, teacher.dims, {"init_variance": 2.5})
    assert torch.allclose(method.variance(), torch.full((6,), 2.5))
    out = student(torch.randn(3, 1, 5))
    loss = method.distill_losses(out, Batch(None, None, teacher), 0)["vid"]
    mean, var = method.regressor(out.feature), F.softplus(method.raw_variance) + 1e-5
    hand = (0.5 * (teacher.feature - mean) ** 2 / var + 0.5 * var.log()).mean()
    assert torch.isclose(loss, hand)


# ---- pkt ----

def test_pkt_zero_for_identical_features_and_invariant_to_scale_and_width():
    s = randn(5, 4)
    assert pkt_loss(s, s) == 0
    assert pkt_loss(3 * s, torch.cat([s, torch.zeros(5, 2, dtype=f64)], 1)).abs() < 1e-12
    assert pkt_loss(s, randn(5, 7)) > 0


def test_pkt_matches_hand_computation_and_small_batches():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=f64)      # cos 0 -> kernel 1/2
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=f64)      # cos 1 -> kernel 1
    # student rows (1, 1/2) / 1.5 = (2/3, 1/3); teacher rows (1/2, 1/2); mean over the 4 entries
    expected = (0.5 * math.log(0.5 / (2 / 3)) + 0.5 * math.log(0.5 / (1 / 3))) / 2
    assert math.isclose(pkt_loss(s, t).item(), expected, rel_tol=1e-6)
    assert pkt_loss(randn(1, 3), randn(1, 4)) == 0
    zeros = torch.zeros(2, 3, dtype=f64, requires_grad=True)
    pkt_loss(zeros, randn(2, 4)).backward()
    assert torch.isfinite(zeros.grad).all()


# ---- tekap ----

def test_tekap_without_views_is_kd_plus_feature_hint():
    s, t, fs, ft = randn(4, 3), randn(4, 3), randn(4, 6), randn(4, 6)
    assert torch.allclose(tekap_kd(s, t, perturb(t, 0), 2.0, 0.8), soft_kl(s, t, 2.0), rtol=1e-14)
    assert torch.allclose(tekap_feature(fs, ft, perturb(ft, 0)), F.mse_loss(fs, ft), rtol=1e-14)


def test_tekap_views_add_weighted_kd_terms():
    s, t = randn(50, 4), 10 * randn(50, 4)
    views = perturb(t, 3)
    assert views.shape == (3, 50, 4)
    assert torch.allclose((views - 0.9 * t).std(), torch.tensor(0.1, dtype=f64), rtol=0.1)
    by_hand = soft_kl(s, t, 2.0) + 0.8 * sum(soft_kl(s, v, 2.0) for v in views)
    assert torch.isclose(tekap_kd(s, t, views, 2.0, 0.8), by_hand)


# ---- ttm ----

def test_ttm_matches_kl_to_power_transformed_teacher():
    s, t, temperature = randn(4, 5), randn(4, 5), 3.0
    powered = F.softmax(t, 1) ** (1 / temperature)
    target = powered / powered.sum(1, keepdim=True)
    expected = (target * (target.log() - F.log_softmax(s, 1))).sum(1).mean()
    assert torch.isclose(ttm_loss(s, t, temperature), expected)
    # temperature 1 is plain KL(p_t || p_s), without the tau^2 factor of KD
    assert torch.isclose(ttm_loss(s, t, 1.0), soft_kl(s, t, 1.0))
    assert ttm_loss(t, t, 1.0).abs() < 1e-12 and ttm_loss(t, t, 2.0) > 0
