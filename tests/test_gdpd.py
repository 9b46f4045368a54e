"""GDPD: DDIM against diffusers, the DDPM prior on known mixtures, the hint, the stages, the student."""
import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from torch import nn

from earlykd.distill import Batch, TeacherDims, TeacherOutputs, build_method
from earlykd.distill.gdpd import (GDPD, DiffusionPrior, NoiseAdapter, ddim_chain, ddim_coefficients, ddim_plan,
                                  ddim_sample, ddim_step, ddim_timesteps)
from earlykd.errors import EarlykdError
from earlykd.models import build_model

N_CLASSES, T_DIM, STEPS = 3, 24, 30


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one thread is faster and kinder to a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(options=None, warmup=3, arch="lstm", seed=0):
    torch.manual_seed(seed)
    student = build_model(arch, 1, N_CLASSES, 1, 16)
    return build_method("gdpd", student, TeacherDims(N_CLASSES, T_DIM, T_DIM, STEPS), options or {}, warmup)


def batch(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    teacher = TeacherOutputs(torch.randn(n, N_CLASSES, generator=g), torch.randn(n, T_DIM, generator=g),
                             torch.randn(n, STEPS, T_DIM, generator=g))
    return Batch(torch.randn(n, 1, 20, generator=g), torch.randint(0, N_CLASSES, (n,), generator=g), teacher)


# -- DDIM against diffusers ------------------------------------------------------------------------

def reference_scheduler():
    s = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                      clip_sample=False, set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
    s.set_timesteps(10)   # 900, 800, ..., 0; the release runs the second half
    return s


def trained_like_prior(width=8):
    torch.manual_seed(0)
    prior = DiffusionPrior(width)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return prior.eval()


def test_default_grid_is_the_second_half_of_a_ten_step_ddim_grid():
    assert ddim_timesteps(400, 5) == [400, 300, 200, 100, 0]
    assert ddim_timesteps(400, 5) == reference_scheduler().timesteps[5:].tolist()
    assert ddim_timesteps(400, 0) == [] and ddim_timesteps(400, 1) == [400]


@pytest.mark.parametrize("t, t_prev", [(400, 300), (900, 800), (100, 0), (0, -1)])
def test_one_ddim_step_matches_diffusers(t, t_prev):
    prior, ref = trained_like_prior(), reference_scheduler()
    x = torch.randn(32, 8)
    with torch.no_grad():
        eps = prior(x, torch.full((32,), t))
        expected = ref.step(eps, t, x, eta=0.0).prev_sample
        got = ddim_step(prior, x, t, t_prev)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_five_step_chain_from_400_matches_diffusers():
    prior, ref = trained_like_prior(), reference_scheduler()
    x = torch.randn(32, 8)
    with torch.no_grad():
        expected = x
        for t in ref.timesteps[5:].tolist():
            expected = ref.step(prior(expected, torch.full((32,), t)), t, expected, eta=0.0).prev_sample
        got = ddim_chain(prior, x)   # defaults: start 400, 5 steps
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-6)   # float32; the chain reaches |x| ~ 10
    assert not torch.allclose(got, x, atol=1e-2)


def test_zero_steps_is_the_identity_and_gradients_flow_through_the_chain():
    prior = trained_like_prior()
    x = torch.randn(8, 8, requires_grad=True)
    assert ddim_chain(prior, x, 400, 0) is x
    ddim_chain(prior, x).square().sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in prior.denoiser.parameters())


def test_cached_schedule_terms_equal_fresh_ones():
    prior = DiffusionPrior(8)
    s = prior.schedule
    assert torch.equal(s.sqrt_alpha_bar, s.alpha_bar.sqrt())
    assert torch.equal(s.sqrt_one_minus_alpha_bar, (1 - s.alpha_bar).sqrt())
    x0, noise, t = torch.randn(64, 8), torch.randn(64, 8), torch.randint(0, 1000, (64,))
    ab = s.alpha_bar[t].unsqueeze(-1)
    assert torch.equal(s.add_noise(x0, noise, t), ab.sqrt() * x0 + (1 - ab).sqrt() * noise)
    for start, steps in ((400, 5), (999, 100), (2, 5)):
        grid = ddim_timesteps(start, steps)
        fresh = [ddim_coefficients(s.alpha_bar_values, t, grid[i + 1] if i + 1 < len(grid) else -1)
                 for i, t in enumerate(grid)]
        assert ddim_plan(s, grid) == fresh and ddim_plan(s, grid) is ddim_plan(s, grid)


def running_stats_pair(dtype=torch.float32):
    """A trained-like prior with non-trivial running statistics (in train mode), and an eval-mode copy."""
    import copy
    prior = trained_like_prior().to(dtype).train()
    with torch.no_grad():
        for m in prior.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
    return prior, copy.deepcopy(prior).eval()


def chain_and_reference(prior, reference, start, steps, dtype):
    """The training chain (folded) and the eval-mode module chain step by step, with every gradient."""
    x, upstream = torch.randn(16, 8, dtype=dtype), torch.randn(16, 8, dtype=dtype)
    fast_x, ref_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    fast = ddim_chain(prior, fast_x, start, steps, running_stats=True)
    grid, ref = ddim_timesteps(start, steps), ref_x
    for i, t in enumerate(grid):
        ref = ddim_step(reference, ref, t, grid[i + 1] if i + 1 < len(grid) else -1)
    (fast * upstream).sum().backward()
    (ref * upstream).sum().backward()
    return (fast, fast_x.grad), (ref, ref_x.grad)


@pytest.mark.parametrize("start, steps", [(400, 5), (2, 5), (400, 1), (999, 7)])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_folded_chain_is_the_eval_mode_chain_with_every_gradient(start, steps, dtype, tol):
    """The training chain folds each batch norm (on running statistics) into its linear layer and writes
    its backward out; values and every gradient equal the step-by-step chain of an eval-mode prior to
    rounding, without switching any module's mode or touching the running statistics."""
    prior, reference = running_stats_pair(dtype)
    stats = {k: v.clone() for k, v in prior.state_dict().items()}
    (fast, fast_grad), (ref, ref_grad) = chain_and_reference(prior, reference, start, steps, dtype)
    close = lambda a, b: torch.testing.assert_close(a, b, rtol=tol, atol=tol * (1 + b.abs().max().item()))  # noqa: E731
    close(fast, ref)
    close(fast_grad, ref_grad)
    for (name, p), q in zip(prior.named_parameters(), reference.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            close(p.grad, q.grad)
    assert all(m.training for m in prior.modules())
    assert all(torch.equal(v, prior.state_dict()[k]) for k, v in stats.items())


def test_folded_chain_reads_running_statistics_anew_once_they_change():
    """The folded statistics are kept between steps, and read again after a train-mode pass moves the running
    statistics (keep_diffusion, joint) or a conversion replaces them."""
    import copy
    prior, _ = running_stats_pair(torch.float64)
    chain_and_reference(prior, copy.deepcopy(prior).eval(), 400, 5, torch.float64)
    prior.loss(torch.randn(32, 8, dtype=torch.float64))   # train mode: running statistics move in place
    (fast, _), (ref, _) = chain_and_reference(prior, copy.deepcopy(prior).eval(), 400, 5, torch.float64)
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    prior.float()
    (fast, _), (ref, _) = chain_and_reference(prior, copy.deepcopy(prior).eval(), 400, 5, torch.float32)
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)


def test_folded_chain_skips_gradients_nobody_wants_and_other_layouts_take_the_module_chain():
    """With the prior frozen (freeze_prior) only the start gets a gradient, the same one; a denoiser of
    another layout is recognised and run through its modules."""
    from earlykd.distill.gdpd.folded_chain import folded_layers
    prior, reference = running_stats_pair(torch.float64)
    prior.requires_grad_(False)
    reference.requires_grad_(False)
    (fast, fast_grad), (ref, ref_grad) = chain_and_reference(prior, reference, 400, 5, torch.float64)
    torch.testing.assert_close(fast_grad, ref_grad, rtol=1e-12, atol=1e-12)
    assert all(p.grad is None for p in prior.parameters())
    assert folded_layers(prior.denoiser) is not None
    prior.denoiser.blocks.append(nn.ReLU())   # no longer the 7 (linear, batch norm) layers
    assert folded_layers(prior.denoiser) is None
    x = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    ddim_chain(prior, x, running_stats=True).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("moves", [True, False])
@pytest.mark.parametrize("options", [{}, {"use_autoencoder": 0}, {"use_prior": 0}])
def test_tracked_means_are_the_per_step_double_sums(options, moves):
    """alpha and hint_distance, kept as tensors and read in bulk (also past the fold threshold), equal the
    per-step Python double sums of .item() values; while the encoder cannot move, the distances are computed
    at the fold and summed per case in double."""
    d = make(options)
    g = torch.Generator().manual_seed(2)
    expected, n = {}, 0
    for step in range(300):
        cases = 2 + step % 7
        latent = d.to_latent.out_features
        z, teacher = torch.randn(cases, latent, generator=g), torch.randn(cases, T_DIM, generator=g)
        alpha = torch.rand(cases, 1, generator=g) if d.prior is not None else None
        d._track(z, alpha, teacher, encoder_moves=moves)
        if alpha is not None:
            expected["alpha"] = expected.get("alpha", 0.0) + alpha.mean().item() * cases
        encode = d.autoencoder.encoder if d.autoencoder is not None else d.standardise
        if encode is not None:
            target = encode.eval()(teacher)
            encode.train()
            dist = (z - target).norm(dim=1) / target.norm(dim=1).clamp_min(1e-8)
            step = dist.sum().item() if moves else sum(dist.tolist())
            expected["hint_distance"] = expected.get("hint_distance", 0.0) + step
        n += cases
    got, want = d.diagnostics(), {k: v / n for k, v in expected.items()}
    assert got == want if moves else got == pytest.approx(want, rel=1e-6)   # a batched encoding rounds otherwise
    assert d.diagnostics() == {}


# -- the prior on known Gaussian mixtures -------------------------------------------------------------

def mixture(dim, seed):
    g = torch.Generator().manual_seed(seed)
    means, scales = 1.5 * torch.randn(3, dim, generator=g), 0.3 + 0.4 * torch.rand(3, dim, generator=g)
    w = torch.tensor([0.5, 0.3, 0.2])
    mean = w @ means
    cov = sum(w[i] * (torch.diag(scales[i] ** 2) + torch.outer(means[i], means[i])) for i in range(3))
    cov = cov - torch.outer(mean, mean)

    def draw(n):
        k = torch.multinomial(w, n, replacement=True)
        return means[k] + scales[k] * torch.randn(n, dim)
    return draw, mean, cov


class TimeMLP(nn.Module):
    """A plain time-conditioned MLP (t enters as sin/cos of a quarter turn) for checking the DDPM machinery."""

    def __init__(self, dim, hidden=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 2, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, dim))

    def forward(self, x, t):
        a = t[:, None].float() * (torch.pi / 2000)
        return self.net(torch.cat([x, a.sin(), a.cos()], 1))


def fit(prior, draw, iters, lr=3e-3):
    opt = torch.optim.Adam(prior.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters)
    for _ in range(iters):
        loss = prior.loss(draw(256))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return prior.eval()


@pytest.mark.parametrize("dim", [2, 8])
def test_ddpm_prior_samples_match_mixture_moments(dim):
    """DDPM training (schedule, q-sample, t uniform, eps-MSE) + full DDIM sampling from pure noise
    (100 steps from t = 999) reproduce a known mixture's mean and covariance.

    Tolerance, in units of the true standard deviations: |mean error| < 0.1 sd and
    |covariance error| < 0.15 sd_i sd_j (seed-fixed runs give about a third of that).
    The denoiser here is a plain time-conditioned MLP: the GDPD denoiser (next test) has an additive
    timestep embedding and a C/4 bottleneck and cannot learn a 2-D or 8-D score from pure noise in
    seconds; the machinery under test (prior.loss, schedule, sampler) is the one GDPD uses."""
    torch.manual_seed(0)
    draw, mean, cov = mixture(dim, seed=dim)
    prior = fit(DiffusionPrior(dim, denoiser=TimeMLP(dim)), draw, 3000)
    with torch.no_grad():
        x = ddim_sample(prior, torch.randn(4000, dim), ddim_timesteps(999, 100))
    sd = cov.diag().sqrt()
    assert ((x.mean(0) - mean) / sd).abs().max() < 0.1
    assert ((torch.cov(x.T) - cov) / torch.outer(sd, sd)).abs().max() < 0.15


def test_gdpd_denoiser_learns_the_mixture_in_the_gdpd_regime():
    """The GDPD denoiser alone, on a standardised 8-D mixture inside a 32-wide latent (teacher latents are
    batch-normed and lie near a low-dimensional set). Held-out DDPM loss falls far below its untrained value
    and below the 1.0 of predicting zero; the GDPD chain (q-noise data to t = 400, 5 DDIM steps) gives a
    covariance within 0.6 of the data's (skipping the denoiser would inflate it by (1 - ab) / ab = 4.3; an
    exact score still shrinks a unit variance by ~0.2 in 5 steps from t = 400; seed-fixed: about 0.35)."""
    torch.manual_seed(0)
    draw8, mean, cov = mixture(8, seed=3)
    sd = cov.diag().sqrt()
    basis = torch.linalg.qr(torch.randn(32, 8, generator=torch.Generator().manual_seed(4)))[0]

    def draw(n):
        return ((draw8(n) - mean) / sd) @ basis.T

    prior = DiffusionPrior(32)

    def evaluate():
        prior.eval()
        with torch.no_grad():
            x0 = draw(4000)
            loss = prior.loss(x0).item()
            t = torch.full((4000,), 400)
            x = ddim_chain(prior, prior.schedule.add_noise(x0, torch.randn_like(x0), t)) @ basis
        prior.train()
        return loss, (torch.cov(x.T) - cov / torch.outer(sd, sd)).abs().max().item()

    loss0, _ = evaluate()
    fit(prior, draw, 1500, lr=2e-3)
    loss1, cov1 = evaluate()
    assert loss1 < 0.4 * loss0 and loss1 < 0.55
    assert cov1 < 0.6


# -- the hint -------------------------------------------------------------------------------------------

class ConstantAlpha(nn.Module):
    def forward(self, feature):
        return torch.ones(len(feature), 1)


def test_alpha_one_and_zero_steps_give_the_projected_student_feature():
    d = make({"steps": 0})
    d.adapter = ConstantAlpha()
    feature = d.student(batch().x).feature
    torch.testing.assert_close(d.hint(feature), d.project(d.to_latent(feature)))


class ConstantAlpha03(nn.Module):
    def forward(self, feature):
        return torch.full((len(feature), 1), 0.3)


def test_noise_fusion_is_linear_in_alpha():
    d = make({"steps": 0})
    d.adapter = ConstantAlpha03()
    feature = d.student(batch().x).feature
    torch.manual_seed(11)
    got = d.hint(feature)
    torch.manual_seed(11)
    z = d.to_latent(feature)
    torch.testing.assert_close(got, d.project(0.3 * z + 0.7 * torch.randn_like(z)))


@pytest.mark.parametrize("per_feature", [0, 1])
def test_hint_ce_reaches_student_encoder_adapter_and_denoiser(per_feature):
    d = make({"alpha_per_feature": per_feature})
    b = batch()
    out = d.student(b.x)
    alpha = d.adapter(d.to_latent(out.feature))
    assert alpha.shape == (16, 16 if per_feature else 1)
    assert ((alpha > 0) & (alpha < 1)).all()
    F.cross_entropy(d.hint_logits(out.feature), b.y).backward()
    for module in (d.student.lstm, d.adapter, d.to_latent, d.project, d.prior.denoiser, d.student.head):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None for p in d.autoencoder.parameters())


def test_noise_adapter_is_a_two_way_softmax():
    torch.manual_seed(0)
    adapter = NoiseAdapter(16, 4)
    f = 5 * torch.randn(10, 16)
    alpha = adapter(f)
    logits = adapter.net(f).view(10, 2, 4)
    torch.testing.assert_close(alpha, torch.sigmoid(logits[:, 0] - logits[:, 1]))


def test_separate_hint_head_and_no_prior_ablation():
    d = make({"hint_head_own": 0})
    b = batch()
    out = d.student(b.x)
    F.cross_entropy(d.hint_logits(out.feature), b.y).backward()
    assert d.hint_head.weight.grad is not None and d.student.head.weight.grad is None

    d = make({"use_prior": 0})
    assert d.prior is None and d.adapter is None and d.autoencoder is None
    feature = d.student(b.x).feature
    torch.testing.assert_close(d.hint(feature), d.project(d.to_latent(feature)))
    assert set(d.forward_train(b, 0)[1]) == {"ce"} and set(d.forward_train(b, 3)[1]) == {"ce", "hint"}


def test_without_autoencoder_the_prior_runs_on_the_standardised_teacher_feature():
    d = make({"use_autoencoder": 0})
    assert d.autoencoder is None and d.to_latent.out_features == T_DIM
    b = batch()
    assert set(d.forward_train(b, 0)[1]) == {"ce", "diffusion"}
    _, losses = d.forward_train(b, 3)
    losses["hint"].backward()
    assert d.to_latent.weight.grad is not None


# -- the two stages --------------------------------------------------------------------------------------

def test_prior_losses_only_during_warmup_hint_only_after():
    d, b = make(warmup=3), batch()
    _, early = d.forward_train(b, 2)
    assert set(early) == {"ce", "diffusion", "recon"}
    sum(early.values()).backward()
    assert all(p.grad is not None for p in d.autoencoder.parameters())
    assert all(p.grad is not None for p in d.prior.denoiser.parameters())
    assert all(p.grad is None for m in (d.to_latent, d.adapter, d.project) for p in m.parameters())

    d.zero_grad(set_to_none=True)
    _, late = d.forward_train(b, 3)
    assert set(late) == {"ce", "hint"}
    sum(late.values()).backward()
    assert all(p.grad is None for p in d.autoencoder.parameters())
    assert d.to_latent.weight.grad is not None


def test_weight_scales_the_added_terms():
    b = batch()
    torch.manual_seed(5)
    one = make({"weight": 1.0}).forward_train(b, 0)[1]
    torch.manual_seed(5)
    ten = make({"weight": 10.0}).forward_train(b, 0)[1]
    torch.testing.assert_close(ten["ce"], one["ce"])
    torch.testing.assert_close(ten["diffusion"], 10 * one["diffusion"])
    torch.testing.assert_close(ten["recon"], 10 * one["recon"])


def test_joint_ablation_and_hinton_term():
    d, b = make({"joint": 1}, warmup=3), batch()
    assert d.warmup == 0 and d.two_stage
    assert set(d.forward_train(b, 0)[1]) == {"ce", "diffusion", "recon", "hint"}
    d = make({"hinton": 1, "weight": 0.5})
    logits, losses = d.forward_train(b, 5)
    tau = 2.0
    kl = F.kl_div(F.log_softmax(logits / tau, 1), F.softmax(b.teacher.logits / tau, 1), reduction="batchmean")
    torch.testing.assert_close(losses["kd"], 0.5 * tau * tau * kl)
    assert "kd" not in make().forward_train(b, 5)[1]


def test_j_hint_samples_average_their_cross_entropies():
    d, b = make({"samples": 4}), batch()
    out = d.student(b.x)
    torch.manual_seed(7)
    got = d.distill_losses(out, b, 3)["hint"]
    torch.manual_seed(7)
    ces = [F.cross_entropy(d.hint_logits(out.feature), b.y) for _ in range(4)]
    torch.testing.assert_close(got, sum(ces) / 4)
    assert len({round(c.item(), 6) for c in ces}) == 4   # fresh noise per sample
    d1 = make({"samples": 1})
    torch.manual_seed(7)
    assert not torch.allclose(d1.distill_losses(d1.student(b.x), b, 3)["hint"], got)


# -- the student ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["lstm", "fcn"])
def test_inference_student_is_the_plain_student(arch):
    torch.manual_seed(0)
    base = build_method("base", build_model(arch, 1, N_CLASSES, 1, 16), None)
    d = make(arch=arch)
    ours, theirs = d.student.state_dict(), base.student.state_dict()
    assert list(ours) == list(theirs)
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    d.eval(), base.eval()
    d.prior.forward = None   # inference must not touch the prior
    x = batch().x
    torch.testing.assert_close(d(x), base(x), atol=0, rtol=0)
    assert {k[len("student."):] for k in d.state_dict() if k.startswith("student.")} == set(theirs)


def test_options_are_checked():
    with pytest.raises(EarlykdError):
        make({"stepz": 3})
    for bad in ({"start": 1000}, {"steps": -1}, {"samples": 0}, {"alpha_per_feature": 2}, {"steps": 2.5}):
        with pytest.raises(EarlykdError):
            make(bad)
    assert isinstance(make(), GDPD) and make().warmup == 3


def test_trainer_runs_both_stages_and_selects_after_warmup():
    from earlykd.train.loop import Split, Trainer
    d = make(warmup=2)
    n = 24
    g = torch.Generator().manual_seed(3)
    teacher = TeacherOutputs(torch.randn(n, N_CLASSES, generator=g), torch.randn(n, T_DIM, generator=g),
                             torch.randn(n, STEPS, T_DIM, generator=g))
    train = Split(torch.randn(n, 1, 20, generator=g), torch.randint(0, N_CLASSES, (n,), generator=g), teacher)
    val = Split(torch.randn(8, 1, 20, generator=g), torch.randint(0, N_CLASSES, (8,), generator=g))
    cfg = {"lr": 1e-3, "weight_decay": 1e-5, "schedule": "none", "epochs": 4, "seed": 0, "batch_size": 8,
           "select": "loss", "min_epochs": 0, "patience": None, "checkpoint_every": 0, "progress": False}
    fit = Trainer(d, cfg, torch.device("cpu")).fit(train, val)
    assert [set(r) - {"epoch", "val_loss", "val_acc"} for r in fit.history] == \
        [{"ce", "diffusion", "recon"}] * 2 + [{"ce", "hint", "alpha", "hint_distance"}] * 2
    assert fit.best_epoch >= 2


def test_history_shows_alpha_and_hint_distance_without_changing_training(tmp_path):
    """Stage 2 rows carry the mean alpha and the hint's relative distance to the teacher latent; logging
    them leaves the losses and weights exactly as they are without it."""
    from earlykd import api
    from earlykd.distill.gdpd import GDPD
    small = dict(data="UnitTest", length=32, arch="fcn", layers=1, hidden=8, batch_size=8, progress=False)
    teacher = api.train_teacher(**small, epochs=2, select="acc_loss", out=tmp_path / "t")
    run = api.distill(teacher, method="gdpd", earliness=0.5, epochs=4, warmup=2, out=tmp_path / "s", **small)
    rows = run.record["history"]
    assert all("alpha" not in r for r in rows[:2]) and all(0 < r["alpha"] < 1 for r in rows[2:])
    assert all(r["hint_distance"] > 0 for r in rows[2:])
    real = GDPD._track
    try:
        GDPD._track = lambda self, *a, **k: None
        quiet = api.distill(teacher, method="gdpd", earliness=0.5, epochs=4, warmup=2, out=tmp_path / "q", **small)
    finally:
        GDPD._track = real
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("alpha", "hint_distance")} for r in rs]  # noqa: E731
    assert strip(rows) == quiet.record["history"]


def test_stage_two_variants():
    """keep_diffusion keeps the prior's loss on after the warm-up; freeze_prior stops the prior, adapter and
    AE from learning while the student still does; average_probs scores J hints by their mean probability."""
    from earlykd.distill import Batch
    g = torch.Generator().manual_seed(5)
    n = 8
    teacher = TeacherOutputs(torch.randn(n, N_CLASSES, generator=g), torch.randn(n, T_DIM, generator=g),
                             torch.randn(n, STEPS, T_DIM, generator=g))
    batch = Batch(torch.randn(n, 1, 20, generator=g), torch.randint(0, N_CLASSES, (n,), generator=g), teacher)
    assert set(make({"keep_diffusion": 1}, warmup=1).forward_train(batch, 1)[1]) == {"ce", "hint", "diffusion", "recon"}
    assert set(make(warmup=1).forward_train(batch, 1)[1]) == {"ce", "hint"}
    d = make({"freeze_prior": 1}, warmup=1)
    prior_before = {k: v.clone() for k, v in d.prior.state_dict().items() if v.is_floating_point()}
    _, losses = d.forward_train(batch, 1)
    sum(losses.values()).backward()
    assert all(p.grad is None for m in (d.prior, d.adapter, d.autoencoder) for p in m.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.student.parameters())
    assert all(torch.equal(v, d.prior.state_dict()[k]) for k, v in prior_before.items())
    one = make({"samples": 2, "average_probs": 1}, warmup=0)
    torch.manual_seed(1)
    _, losses = one.forward_train(batch, 0)
    torch.manual_seed(1)
    out = one.student(batch.x)
    logits = [one.scoring_head(one.project(one.latent_hint(out.feature)[0])) for _ in range(2)]
    mean = (torch.softmax(logits[0], 1) + torch.softmax(logits[1], 1)) / 2
    by_hand = -mean[torch.arange(n), batch.y].log().mean()
    assert torch.allclose(losses["hint"], by_hand, atol=1e-5)


@pytest.mark.parametrize("autoencoder", [1, 0])
def test_teacher_head_scores_the_decoded_hint_and_stays_frozen(autoencoder):
    """teacher_head = 1: hint logits are the teacher's head on the hint mapped back to the teacher's width
    (AE decoder, or the standardisation undone); gradients reach the student and the chain but neither the
    teacher's head nor the decoder."""
    d = make({"teacher_head": 1, "use_autoencoder": autoencoder}, warmup=0)
    b = batch()
    with pytest.raises(EarlykdError, match="needs the teacher's head"):
        d.forward_train(b, 0)
    with pytest.raises(EarlykdError, match="teacher head has shape"):
        d.attach_teacher_head(torch.randn(N_CLASSES, T_DIM + 1), torch.randn(N_CLASSES))
    weight, bias = torch.randn(N_CLASSES, T_DIM, requires_grad=True), torch.randn(N_CLASSES, requires_grad=True)
    d.attach_teacher_head(weight, bias)
    if not autoencoder:  # non-trivial running statistics to undo
        d.standardise.running_mean.uniform_(-1, 1)
        d.standardise.running_var.uniform_(0.5, 2)
    out = d.student(b.x)
    torch.manual_seed(3)
    z = d.latent_hint(out.feature)[0]
    if autoencoder:
        teacher_feature = d.autoencoder.decoder(z)
    else:
        bn = d.standardise
        teacher_feature = z * (bn.running_var + bn.eps).sqrt() + bn.running_mean
    torch.manual_seed(3)
    got = d.hint_logits(out.feature)
    torch.testing.assert_close(got, teacher_feature @ weight.T + bias)
    F.cross_entropy(got, b.y).backward()
    assert weight.grad is None and bias.grad is None
    assert d.student.head.weight.grad is None  # the student's head does not score the hint
    assert d.student.lstm.weight_ih_l0.grad.abs().sum() > 0 and d.to_latent.weight.grad.abs().sum() > 0
    if autoencoder:
        assert d.autoencoder.decoder.weight.grad is None
    assert set(d.forward_train(b, 0)[1]) == {"ce", "hint"}
    with pytest.raises(EarlykdError, match="needs use_prior"):
        make({"teacher_head": 1, "use_prior": 0})


def test_teacher_head_through_distill(tmp_path):
    """earlykd's distill hands the stored teacher's own head to teacher_head = 1."""
    from earlykd import runs
    from earlykd.config import resolve
    from earlykd.teacher import Teacher
    base = {"data.name": "UnitTest", "model.arch": "fcn", "model.layers": 1, "model.hidden": 8,
            "train.batch_size": 8, "train.progress": False, "train.threads": 1}
    t = runs.train_teacher(resolve(overrides={**base, "train.epochs": 2, "train.select": "acc_loss",
                                              "out": str(tmp_path / "t")}))
    weight, bias = Teacher.load(t.path).head()
    assert weight.shape == (2, 8) and bias.shape == (2,)
    cfg = resolve(overrides={**base, "train.epochs": 2, "train.warmup": 1, "method.name": "gdpd",
                             "method.options": {"teacher_head": 1}, "prefix.earliness": 0.5,
                             "teacher": str(t.path), "out": str(tmp_path / "s")})
    run = runs.distill(cfg)
    assert run.record["history"][-1]["hint"] > 0


def test_adam_groups_fuse_only_the_methods_own_modules(tmp_path, monkeypatch):
    """GDPD's student keeps the plain Adam every method gets; its prior, adapter, map and projection get
    torch's fused Adam, the same update to rounding. A method without the flag has one group, and a saved
    state grouped otherwise is refused in one line on resume."""
    from earlykd.train.loop import Trainer
    d = make(warmup=0)
    student, extra = d.optimizer_groups()
    assert [id(p) for p in student["params"]] == [id(p) for p in d.student.parameters()]
    assert extra["fused"] and {id(p) for p in extra["params"]} == \
        {id(p) for p in d.parameters()} - {id(p) for p in d.student.parameters()}
    kd = build_method("kd", build_model("fcn", 1, N_CLASSES, 1, 8), TeacherDims(N_CLASSES, T_DIM, T_DIM, STEPS))
    assert [[id(p) for p in g["params"]] for g in kd.optimizer_groups()] == [[id(p) for p in kd.parameters()]]

    import copy
    plain = copy.deepcopy(d)
    grouped_opt = torch.optim.Adam(d.optimizer_groups(), lr=1e-2)
    plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-2)
    for model, opt in ((d, grouped_opt), (plain, plain_opt)):   # one step: Adam's sign-like steps turn
        torch.manual_seed(5)                                     # later rounding in a zero gradient (a bias
        _, losses = model.forward_train(batch(), 1)              # before a batch norm) into +-lr
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    same = []
    for (name, p), q in zip(d.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)
        same.append(torch.equal(p, q))
    assert not all(same)   # the fused kernel ran: it rounds differently somewhere

    cfg = {"lr": 1e-3, "weight_decay": 0, "schedule": "none", "epochs": 1, "seed": 0, "batch_size": 8,
           "select": "loss", "min_epochs": 0, "patience": None, "checkpoint_every": 0, "progress": False}
    Trainer(make(), cfg, torch.device("cpu"), tmp_path / "state.safetensors").save_state(1)
    monkeypatch.setattr(GDPD, "fused_auxiliary", False)
    with pytest.raises(EarlykdError, match="optimiser state does not fit"):
        Trainer(make(), cfg, torch.device("cpu")).load_state(tmp_path / "state.safetensors")


def test_an_interrupted_gdpd_run_resumes_to_the_same_student(tmp_path, monkeypatch):
    """Interrupted in stage 2 and resumed, a GDPD run (the student's and the fused Adam groups, the student-only
    best state) ends with the same history, metrics and weights as one that ran through."""
    from conftest import interrupt_at
    from earlykd import api, runs
    from earlykd.train.checkpoint import load_model
    small = dict(data="UnitTest", length=32, arch="fcn", layers=1, hidden=8, batch_size=8, progress=False)
    teacher = api.train_teacher(**small, epochs=2, select="acc_loss", out=tmp_path / "t")
    args = dict(method="gdpd", earliness=0.5, epochs=6, warmup=2, sets=["train.checkpoint_every=1"], **small)
    full = api.distill(teacher, out=tmp_path / "full", **args)
    undo = interrupt_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        api.distill(teacher, out=tmp_path / "cut", **args)
    undo()
    resumed = api.distill(teacher, out=tmp_path / "cut", resume=True, **args)
    assert resumed.record["history"] == full.record["history"] and resumed.metrics == full.metrics
    a, b = (load_model(r.path / runs.MODEL_FILE)[0].state_dict() for r in (full, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("options", [{}, {"samples": 3, "average_probs": 1}, {"alpha_per_feature": 1, "hinton": 1}])
def test_a_stage_two_step_has_the_gradients_of_the_module_chain(options, monkeypatch):
    """End to end in double precision: every parameter's gradient of a stage-2 loss is the same (1e-10) whether
    the chain runs folded or through the denoiser's modules on running statistics."""
    import copy

    from earlykd.distill.gdpd import sampler
    d = make(options, warmup=0, arch="fcn").double()
    with torch.no_grad():
        for m in d.prior.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
    reference = copy.deepcopy(d)
    b = batch()
    b = Batch(b.x.double(), b.y, TeacherOutputs(*(t.double() for t in (b.teacher.logits, b.teacher.feature,
                                                                        b.teacher.hidden))))
    grads = []
    for model, fold in ((d, True), (reference, False)):
        if not fold:
            monkeypatch.setattr(sampler, "folded_chain", lambda *a: None)
        torch.manual_seed(7)
        _, losses = model.forward_train(b, 1)
        sum(losses.values()).backward()
        grads.append({k: p.grad for k, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any(k.startswith("prior.denoiser.blocks") for k in grads[0])
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-10, atol=1e-10, msg=k)
    assert not all(torch.equal(grads[0][k], grads[1][k]) for k in grads[0])   # two paths, rounding apart


def test_the_best_state_is_gdpds_student_and_a_state_that_does_not_fit_is_refused():
    """GDPD keeps only its student as the best state and restores it (or a whole state); another method keeps
    everything. A state lacking a kept tensor, or holding a foreign one, is refused in one line."""
    d = make(arch="fcn")
    kept = d.selection_state()
    assert set(kept) == {f"student.{k}" for k in d.student.state_dict()}
    d.restore_selection({k: v.clone() for k, v in kept.items()})
    d.restore_selection({k: v.clone() for k, v in d.state_dict().items()})
    for bad in ({k: v for k, v in kept.items() if not k.endswith("head.weight")}, {**kept, "stray": torch.zeros(1)}):
        with pytest.raises(EarlykdError, match="does not fit"):
            d.restore_selection(bad)
    kd = build_method("kd", build_model("fcn", 1, N_CLASSES, 1, 8), TeacherDims(N_CLASSES, T_DIM, T_DIM, STEPS))
    whole = kd.selection_state()
    assert set(whole) == set(kd.state_dict())
    with pytest.raises(EarlykdError, match="does not fit"):
        kd.restore_selection({k: v for k, v in whole.items() if k != next(iter(whole))})


def test_averaged_weights_are_the_mean_over_the_last_quarter_and_gdpd_averages_its_student_alone():
    """The cross-fitting trainer's state is the running mean of the kept tensors over the last quarter of the
    epochs: for GDPD the student's alone, for a method without training-only modules its whole state."""
    from earlykd.early.crossfit import AveragingTrainer, averaging_start
    from earlykd.train.loop import Split
    n, epochs = 24, 8
    g = torch.Generator().manual_seed(3)
    teacher = TeacherOutputs(torch.randn(n, N_CLASSES, generator=g), torch.randn(n, T_DIM, generator=g),
                             torch.randn(n, STEPS, T_DIM, generator=g))
    train = Split(torch.randn(n, 1, 20, generator=g), torch.randint(0, N_CLASSES, (n,), generator=g), teacher)
    cfg = {"lr": 1e-2, "weight_decay": 0, "schedule": "none", "epochs": epochs, "seed": 0, "batch_size": 8,
           "select": "loss", "min_epochs": 0, "patience": None, "checkpoint_every": 0, "progress": False}
    kd = build_method("kd", build_model("fcn", 1, N_CLASSES, 1, 8), TeacherDims(N_CLASSES, T_DIM, T_DIM, STEPS))
    for model in (make(warmup=2, arch="fcn"), kd):
        trainer, seen = AveragingTrainer(model, cfg, torch.device("cpu")), []
        run_epoch = trainer._train_epoch

        def train_and_keep(split, run_epoch=run_epoch, trainer=trainer, seen=seen):
            losses = run_epoch(split)
            seen.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
            return losses
        trainer._train_epoch = train_and_keep
        trainer.fit(train, Split(train.x[:0], train.y[:0]))
        kept = trainer.best_state
        assert set(kept) == set(model.selection_state())
        assert (len(kept) < len(model.state_dict())) == (model is not kd)
        last = seen[averaging_start(epochs):]
        assert len(last) == 2
        for k, v in kept.items():
            if v.is_floating_point():
                torch.testing.assert_close(v, (last[0][k] + last[1][k]) / 2, rtol=1e-6, atol=1e-7, msg=k)
                assert torch.equal(model.state_dict()[k], v)   # restored after training
