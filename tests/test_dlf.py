"""dlf: the E-step and -Q against brute-force Gaussian algebra, the zero-noise limit, the sampled
covariance, EM monotonicity on a fixed batch, and member logits from an ensemble teacher."""
from __future__ import annotations

import math

import pytest
import torch

from earlykd.distill import Batch, TeacherDims, TeacherOutputs, build_method
from earlykd.distill.dlf import DLFStudent, e_step, neg_q, predictive
from earlykd.distill.dlf.method import DLFHeads
from earlykd.errors import EarlykdError
from earlykd.models import build_model

f64 = torch.float64
LR, STEPS = 0.1, 25


def lower(c: int, g: torch.Generator) -> torch.Tensor:
    """A lower-triangular matrix with a positive diagonal, far from symmetric."""
    return torch.tril(torch.randn(c, c, generator=g, dtype=f64), -1) * 2 + torch.diag(torch.rand(c, generator=g, dtype=f64) + 0.5)


def problem(seed=0, n=3, B=5, q=3, c=4, hetero=True):
    g = torch.Generator().manual_seed(seed)
    R = torch.randn(n, B, c, generator=g, dtype=f64) * 2
    P = torch.randn(B, q, generator=g, dtype=f64)
    var = torch.rand(B, generator=g, dtype=f64) + 0.2 if hetero else torch.full((B,), 0.7, dtype=f64)
    return R, P, lower(c, g), var


def brute_posterior(R, P, L, var):
    """vec (column-major) of W_i: prior N(0, I), vec(P W L^T) = (L kron P) vec(W), noise diag(var per row)."""
    A = torch.kron(L, P)
    noise_inv = torch.diag(1 / var.repeat(L.shape[0]))
    cov = torch.linalg.inv(torch.eye(A.shape[1], dtype=f64) + A.T @ noise_inv @ A)
    means = torch.stack([cov @ A.T @ noise_inv @ r.T.reshape(-1) for r in R])
    return means, cov


def colvec(W):  # (..., q, c) -> column-major vec
    return W.transpose(-1, -2).reshape(*W.shape[:-2], -1)


def brute_neg_q(R, P, L, var, means, cov):
    """E_q[-log p(F | W)] summed over teachers, without 2 pi, from the vec form."""
    A = torch.kron(L, P)
    noise_inv = torch.diag(1 / var.repeat(L.shape[0]))
    out = 0.0
    for r, m in zip(R, means):
        resid = r.T.reshape(-1) - A @ m
        out = out + 0.5 * resid @ noise_inv @ resid + 0.5 * torch.trace(A.T @ noise_inv @ A @ cov)
        out = out + 0.5 * L.shape[0] * var.log().sum()
    return out


def brute_loglik(R, P, L, var):
    A = torch.kron(L, P)
    cov = A @ A.T + torch.diag(var.repeat(L.shape[0]))
    dist = torch.distributions.MultivariateNormal(torch.zeros(len(cov), dtype=f64), cov)
    return sum(dist.log_prob(r.T.reshape(-1)) for r in R)


# ---- the E-step and -Q ----

@pytest.mark.parametrize("hetero", [False, True])
@pytest.mark.parametrize("shape", [(3, 5, 3, 4), (2, 2, 4, 3), (1, 6, 2, 2)])
def test_e_step_is_the_exact_gaussian_posterior(hetero, shape):
    n, B, q, c = shape
    R, P, L, var = problem(1, n, B, q, c, hetero)
    post = e_step(R, P, L, var)
    means, cov = brute_posterior(R, P, L, var)
    assert torch.allclose(colvec(post.mean), means, atol=1e-5, rtol=0)
    UV = torch.kron(post.U, post.V)
    ours = UV @ torch.diag(1 / post.D.T.reshape(-1)) @ UV.T
    assert torch.allclose(ours, cov, atol=1e-5, rtol=0)


@pytest.mark.parametrize("hetero", [False, True])
def test_neg_q_is_the_expected_complete_data_likelihood_at_new_parameters(hetero):
    """-Q with the posterior of the old parameters, evaluated at new ones (what the M-step minimises)."""
    R, P, L, var = problem(2, hetero=hetero)
    post = e_step(R, P, L, var)
    means, cov = brute_posterior(R, P, L, var)
    R2, P2, L2, var2 = problem(3, hetero=hetero)
    assert torch.allclose(neg_q(R2, P2, L2, var2, post), brute_neg_q(R2, P2, L2, var2, means, cov), rtol=1e-10)


# ---- one teacher, zero noise: logit regression ----

def test_one_teacher_without_phi_is_logit_regression():
    """Phi = 0: the dlf term's gradient on the student's logits is that of (1/2 sigma^2)|mu - F|^2 / B."""
    torch.manual_seed(0)
    student = build_model("lstm", 2, 3, layers=1, hidden=6)
    teacher = TeacherOutputs(torch.randn(5, 3) * 3, torch.randn(5, 4), torch.randn(5, 7, 4))
    method = build_method("dlf", student, teacher.dims, {"ce_weight": 0.0}, warmup=1)
    with torch.no_grad():
        method.heads.phi.weight.zero_()
        method.heads.phi.bias.zero_()
        method.heads.var_raw.fill_(math.log(math.expm1(0.3 - 1e-4)))  # sigma^2 = 0.3
    logits, losses = method.forward_train(Batch(torch.randn(5, 2, 7), torch.arange(5) % 3, teacher), epoch=1)
    grad, = torch.autograd.grad(losses["dlf"], logits)
    assert torch.allclose(grad, (logits - teacher.logits) / (0.3 * 5), atol=1e-6)


def test_one_teacher_zero_noise_limit_regresses_outside_phi():
    """sigma^2 -> 0 with one teacher: sigma^2 grad_mu(-Q) -> -(I - Pi_Phi)(F - mu), logit regression on what
    Phi's column space cannot explain."""
    R, P, L, _ = problem(4, n=1, B=6, q=2, c=3, hetero=False)
    var = torch.full((6,), 1e-10, dtype=f64)
    M = torch.zeros(6, 3, dtype=f64, requires_grad=True)
    post = e_step(R - M, P, L, var)
    grad, = torch.autograd.grad(neg_q(R - M, P, L, var, post), M)
    proj = P @ torch.linalg.pinv(P)
    assert torch.allclose(grad * 1e-10, -(torch.eye(6, dtype=f64) - proj) @ R[0], atol=1e-6)


# ---- sampling ----

def test_sampled_logits_have_the_model_covariance(monkeypatch):
    torch.manual_seed(0)
    student = build_model("fcn", 1, 3, layers=1, hidden=5).eval()
    heads = DLFHeads(student.feature_dim, 3, rank=4, hetero=True)
    with torch.no_grad():
        heads.l_lower.copy_(torch.tensor([[0, 0, 0], [1.5, 0, 0], [-0.7, 0.9, 0]]))
        heads.l_diag.copy_(torch.tensor([0.2, -0.5, 1.0]))
        heads.phi.weight.mul_(4)
        heads.noise.bias.fill_(-1.0)
    model = DLFStudent(student, heads).eval()
    x = torch.randn(2, 1, 12)
    calls = []
    encode = student.encode
    monkeypatch.setattr(student, "encode", lambda x: calls.append(1) or encode(x))
    with torch.no_grad():
        feature, _ = encode(x)
        mu, norm, L = student.head(feature), heads.phi(feature).norm(dim=1), heads.L()
        var = heads.variance(feature)
        for noise in (False, True):
            draws = model.sample(x, 200_000, noise, torch.Generator().manual_seed(1))
            for b in range(2):
                expected = norm[b] ** 2 * L @ L.T + (var[b] * torch.eye(3) if noise else 0)
                d = draws[:, b].double()
                assert torch.allclose(d.mean(0), mu[b].double(), atol=4 * expected.diag().max().sqrt() / 200_000 ** .5)
                assert torch.allclose(torch.cov(d.T), expected.double(), atol=0.02 * expected.abs().max())
    assert len(calls) == 2  # one backbone pass per call


def test_predictive_entropy_and_mutual_information():
    torch.manual_seed(0)
    student = build_model("lstm", 1, 3, layers=1, hidden=5)
    method = build_method("dlf", student, TeacherDims(3, 5, 5, 9, members=4))
    x = torch.randn(6, 1, 9)
    out = predictive(method, x, 64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out.probs.sum(1), torch.ones(6)) and (out.mutual_info >= 0).all()
    assert (out.mutual_info <= out.entropy + 1e-6).all() and (out.entropy <= math.log(3) + 1e-6).all()
    with torch.no_grad():
        method.heads.phi.weight.zero_()
        method.heads.phi.bias.zero_()
    flat = predictive(method, x, 8)  # no spread: every draw is mu
    assert torch.allclose(flat.probs, torch.softmax(student(x).logits, 1), atol=1e-6)
    assert flat.mutual_info.abs().max() < 1e-6
    with pytest.raises(EarlykdError, match="samples"):
        predictive(method, x, 0)


# ---- EM on a fixed batch ----

@pytest.mark.parametrize("hetero", [0, 1])
@pytest.mark.parametrize("seed", [0, 1])
def test_em_never_decreases_q_or_the_likelihood_on_a_fixed_batch(hetero, seed, lr=LR):
    """Each training step (E-step, then one SGD step on -Q) raises the expected complete-data
    log-likelihood under the old posterior, and so the marginal likelihood (both computed by brute force);
    and the step's gradient is the marginal likelihood's (Fisher's identity), which pins both steps down."""
    torch.manual_seed(seed)
    n, B, c = 4, 8, 3
    student = build_model("lstm", 2, c, layers=1, hidden=6).double()
    centre = torch.randn(B, c, dtype=f64) * 2
    members = centre[:, None] + torch.randn(B, n, c, dtype=f64) * torch.tensor([1.5, 0.3, 0.8], dtype=f64)
    teacher = TeacherOutputs(members.mean(1), torch.zeros(B, 1), torch.zeros(B, 1, 1), members)
    method = build_method("dlf", student, teacher.dims, {"ce_weight": 0.0, "hetero": hetero, "rank": 3}).double()
    batch = Batch(torch.randn(B, 2, 10, dtype=f64), torch.arange(B) % c, teacher)
    opt = torch.optim.SGD(method.parameters(), lr=lr)

    def state():
        out = method.student(batch.x)
        R = members.transpose(0, 1) - out.logits
        return R, method.heads.phi(out.feature), method.heads.L(), method.heads.variance(out.feature)

    with torch.no_grad():
        lls = [brute_loglik(*state())]
    params = [p for name, p in method.named_parameters() if name != "factors"]
    for step in range(STEPS):
        with torch.no_grad():
            old = state()
            post = brute_posterior(*old)
            q_before = -brute_neg_q(*old, *post)
        opt.zero_grad()
        _, losses = method.forward_train(batch, epoch=0)
        losses["dlf"].backward()
        if step % 10 == 0:  # Fisher's identity: the M-step's gradient at the E-step's parameters is the likelihood's
            ours = [p.grad for p in params]
            opt.zero_grad()
            (-brute_loglik(*state()) / (n * B)).backward()
            for mine, p in zip(ours, params):
                assert torch.allclose(mine, p.grad, rtol=1e-6, atol=1e-10)
        opt.step()
        with torch.no_grad():
            new = state()
            assert -brute_neg_q(*new, *post) >= q_before - 1e-9
            lls.append(brute_loglik(*new))
            assert lls[-1] >= lls[-2] - 1e-9
    assert lls[-1] > lls[0] + 1.0  # and it did fit


# ---- teacher members ----

def test_ensemble_member_logits_are_the_members_own():
    from earlykd.teacher import EnsembleModel
    torch.manual_seed(0)
    members = [build_model(a, 2, 3, layers=1, hidden=4).eval() for a in ("fcn", "lstm", "fcn")]
    ensemble = EnsembleModel(members).eval()
    x = torch.randn(5, 2, 11)
    with torch.no_grad():
        out, member_logits = ensemble.forward_members(x)
        assert member_logits.shape == (5, 3, 3)
        for i, m in enumerate(members):
            assert torch.equal(member_logits[:, i], m(x).logits)
        assert torch.equal(out.logits, ensemble(x).logits)
    single = TeacherOutputs(out.logits, out.feature, out.hidden)
    assert single.dims.members == 1 and torch.equal(single.members[:, 0], out.logits)
    both = TeacherOutputs(out.logits, out.feature, out.hidden, member_logits)
    assert both.dims.members == 3 and torch.equal(both[1:3].members, member_logits[1:3])


def test_members_mismatch_is_one_clear_line():
    student = build_model("lstm", 1, 2, layers=1, hidden=4)
    method = build_method("dlf", student, TeacherDims(2, 4, 4, 6, members=3))
    teacher = TeacherOutputs(torch.randn(4, 2), torch.randn(4, 4), torch.randn(4, 6, 4), torch.randn(4, 2, 2))
    with pytest.raises(EarlykdError, match="2 member"):
        method.forward_train(Batch(torch.randn(4, 1, 6), torch.tensor([0, 1, 0, 1]), teacher), 0)
    with pytest.raises(EarlykdError, match="needs a teacher"):
        build_method("dlf", student, None)


def test_dlf_from_an_ensemble_teacher_end_to_end(tmp_path):
    """Member logits reach the student from the teacher's cache (an old cache gains them, logits unchanged);
    the run's checkpoint keeps the heads, and predictive() works from the run directory."""
    from earlykd import api, runs
    from earlykd.teacher import Teacher
    from earlykd.train.checkpoint import load_tensors, save_tensors
    small = dict(length=32, layers=1, hidden=8, batch_size=8, progress=False)
    run = api.train_teacher(data="UnitTest", arch="fcn", ensemble=3, epochs=2, select="acc_loss", out=tmp_path / "t",
                            **small)
    teacher = Teacher.load(run.path)
    data = runs.load_prepared(teacher.cfg["data"])
    cpu = torch.device("cpu")
    outs = teacher.outputs(data, cpu)
    for i, m in enumerate(run.record["members"]):
        own = Teacher.load(run.path / m).outputs(data, cpu)
        assert torch.equal(outs["train"].member_logits[:, i], own["train"].logits)
    cache, = run.path.glob("teacher_outputs-*.safetensors")
    tensors, meta = load_tensors(cache)
    save_tensors(cache, {k: v for k, v in tensors.items() if "member" not in k}, meta)   # a cache from before
    again = teacher.outputs(data, cpu)
    assert torch.equal(again["test"].logits, outs["test"].logits)
    assert torch.equal(again["val"].member_logits, outs["val"].member_logits)
    assert "train.member_logits" in load_tensors(cache)[0]

    student = api.distill(run, method="dlf", earliness=0.5, epochs=3, warmup=1, out=tmp_path / "s", **small)
    assert student.record["method"] == "dlf" and math.isfinite(student.record["history"][-1]["dlf"])
    x = data.view("test", earliness=0.5, mode=student.record["prefix_mode"])
    out = predictive(student.path, x, 16)
    assert out.probs.shape == (len(x), data.n_classes) and torch.isfinite(out.entropy).all()
    assert runs.evaluate_run(student.path) == pytest.approx(student.metrics, abs=1e-6)


# ---- contrast models (prefixes) and the closed-form noise ----

def test_helmert_is_an_orthonormal_rotation_into_contrasts_and_the_mean():
    from earlykd.distill.dlf.gaussian import helmert
    for n in (2, 3, 5):
        H = helmert(n, f64)
        assert torch.allclose(H @ H.T, torch.eye(n, dtype=f64), atol=1e-12)
        assert torch.allclose(H[:-1].sum(1), torch.zeros(n - 1, dtype=f64), atol=1e-12)
        assert torch.allclose(H[-1], torch.full((n,), n ** -0.5, dtype=f64))


def contrast_problem(seed, options, n=4, B=7, c=3):
    torch.manual_seed(seed)
    student = build_model("lstm", 2, c, layers=1, hidden=6).double()
    shared = torch.randn(B, 1, c, dtype=f64) * 2          # what the unseen suffix does, common to all members
    members = shared + torch.randn(B, n, c, dtype=f64) * torch.tensor([1.5, 0.3, 0.8], dtype=f64)
    teacher = TeacherOutputs(members.mean(1), torch.zeros(B, 1), torch.zeros(B, 1, 1), members)
    method = build_method("dlf", student, teacher.dims, {"ce_weight": 0.0, "rank": 2, **options}).double()
    with torch.no_grad():
        method.heads.shared_raw.fill_(0.3) if method.heads.shared_raw is not None else None
    return method, Batch(torch.randn(B, 2, 10, dtype=f64), torch.arange(B) % c, teacher), members


def brute_shared_loglik(method, batch, members):
    """log p(all members) with f_i = mu + delta + P W_i L^T + noise, delta ~ N(0, tau^2 I) shared by the
    members at a point: one Gaussian over every member, point and class (column-major per member)."""
    out = method.student(batch.x)
    P, L, var, tau = (method.heads.phi(out.feature), method.heads.L(), method.heads.variance(out.feature),
                      method.heads.shared_variance())
    n, (B, c) = members.shape[1], out.logits.shape
    A = torch.kron(L, P)
    K = A @ A.T + torch.diag(var.repeat(c))
    cov = torch.kron(torch.eye(n, dtype=f64), K) + torch.kron(torch.ones(n, n, dtype=f64), tau * torch.eye(B * c, dtype=f64))
    resid = (members.transpose(0, 1) - out.logits).transpose(1, 2).reshape(-1)   # member, then class, then point
    return torch.distributions.MultivariateNormal(torch.zeros_like(resid), cov).log_prob(resid)


def test_contrast_model_em_gradient_is_the_shared_suffix_likelihoods():
    """Fisher's identity for the rotated model: the EM loss's gradient (every parameter, tau^2 included)
    equals that of the brute-force likelihood of the members with a shared N(0, tau^2) term."""
    method, batch, members = contrast_problem(0, {"contrast": 1})
    names, params = zip(*[(name, p) for name, p in method.named_parameters() if name != "factors"])
    names = list(names)
    _, losses = method.forward_train(batch, epoch=0)
    ours = torch.autograd.grad(losses["dlf"], params)
    theirs = torch.autograd.grad(-brute_shared_loglik(method, batch, members) / (members.shape[1] * len(members)),
                                 params)
    for mine, ref, name in zip(ours, theirs, names):
        assert torch.allclose(mine, ref, rtol=1e-6, atol=1e-10), (name, (mine - ref).abs().max())
    assert ours[names.index("heads.shared_raw")].abs() > 1e-4   # tau^2 does get a gradient


def test_contrast_factor_part_ignores_what_all_members_share():
    """A shift common to every member moves only the mean's residual: the factor model of the contrasts
    (and so Phi's and L's fit to the members' disagreement) is unchanged."""
    method, batch, members = contrast_problem(1, {"contrast": 1})
    shifted = Batch(batch.x, batch.y, TeacherOutputs(batch.teacher.logits, batch.teacher.feature, batch.teacher.hidden,
                                                     members + torch.randn(len(members), 1, 3, dtype=f64) * 5))
    with torch.no_grad():
        out = method.student(batch.x)
        var = method.heads.variance(out.feature)
        a, b = (method._parts(member_targets, out.logits, var) for member_targets in (members, shifted.teacher.members))
    assert torch.allclose(a[0][0], b[0][0], atol=1e-10) and not torch.allclose(a[1][0], b[1][0])


def test_em_noise_takes_the_closed_form_m_step():
    """noise_variance minimises -Q in a scalar sigma^2 (the posterior held), and em_noise moves sigma^2
    (and tau^2) towards it by NOISE_RATE without a gradient."""
    from earlykd.distill.dlf.gaussian import noise_variance
    from earlykd.distill.dlf.method import NOISE_RATE
    R, P, L, _ = problem(5, hetero=False)
    post = e_step(R, P, L, torch.full((5,), 0.7, dtype=f64))
    best = noise_variance(R, P, L, post)
    s = best.clone().requires_grad_(True)
    grad, = torch.autograd.grad(neg_q(R, P, L, s.expand(5), post), s)
    assert abs(grad.item()) < 1e-9 * R.numel()
    for other in (best * 0.8, best * 1.25):
        assert neg_q(R, P, L, other.expand(5), post) > neg_q(R, P, L, best.expand(5), post)
    method, batch, _ = contrast_problem(2, {"contrast": 1, "em_noise": 1})
    before = method.heads.variance(torch.zeros(1, method.heads.phi.in_features, dtype=f64))[0].item()
    _, losses = method.forward_train(batch, epoch=0)
    losses["dlf"].backward()
    assert method.heads.var_raw.grad is None and method.heads.shared_raw.grad is None
    after = method.heads.variance(torch.zeros(1, method.heads.phi.in_features, dtype=f64))[0].item()
    assert after != pytest.approx(before) and 0 < NOISE_RATE < 1


def test_contrast_and_em_noise_refusals_are_one_line():
    student = build_model("lstm", 1, 2, layers=1, hidden=4)
    with pytest.raises(EarlykdError, match="2 or more members"):
        build_method("dlf", student, TeacherDims(2, 4, 4, 6, members=1), {"contrast": 1})
    with pytest.raises(EarlykdError, match="exclude each other"):
        build_method("dlf", student, TeacherDims(2, 4, 4, 6, members=3), {"hetero": 1, "em_noise": 1})
    with pytest.raises(EarlykdError, match="contrast must be 0 or 1"):
        build_method("dlf", student, TeacherDims(2, 4, 4, 6, members=3), {"contrast": 2})


def test_contrast_predictive_noise_is_the_shared_variance(tmp_path):
    heads = DLFHeads(4, 3, rank=2, hetero=False, shared=True)
    with torch.no_grad():
        heads.phi.weight.zero_()
        heads.phi.bias.zero_()
        heads.shared_raw.fill_(math.log(math.expm1(2.0 - 1e-4)))   # tau^2 = 2, sigma^2 stays 1
    student = build_model("fcn", 1, 3, layers=1, hidden=4)
    draws = DLFStudent(student, heads).sample(torch.randn(6, 1, 9), 20000, noise=True,
                                              generator=torch.Generator().manual_seed(0))
    assert draws.var(0).mean().item() == pytest.approx(2.0, rel=0.03)
    state = {f"dlf.{k}": v for k, v in heads.state_dict().items()}
    assert DLFHeads.from_tensors(state, "x").shared_variance().item() == pytest.approx(2.0)
