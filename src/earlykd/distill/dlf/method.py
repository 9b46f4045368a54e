"""dlf: Gaussian distillation of a teacher ensemble into one prefix student (DLF, NeurIPS 2025).

Student logits are Gaussian, N(mu(x), |Phi(x)|^2 L L^T): mu is the student's own head, Phi a linear
head on its feature, L lower-triangular with a softplus diagonal. The ensemble members' full-series
logits at the training prefixes are draws of that model plus noise (scalar sigma^2, or a per-prefix
variance from a head when hetero = 1). Epochs before train.warmup fit it with free per-member factors
and an MMD penalty towards the prior; later epochs run EM, one E-step and one optimiser step on -Q
per mini-batch. Loss = ce_weight * CE(mu, y) + weight * (-Q or the initial loss) / (members * batch).

contrast = 1 (docs/dlf.md, "Prefixes"): what the unseen suffix does to the members' logits is shared
by all members, a term N(0, tau^2 I) common to them. Rotating the members orthonormally into n - 1
contrasts and their scaled mean keeps the model's form: the contrasts are n - 1 members without mu or
tau^2, the mean is one member with noise sigma^2 + n tau^2; EM runs on both.
em_noise = 1: the scalar variances take their closed-form M-step (a running mean over batches)
instead of gradient steps.
oof = 1: each member's logits at a training series come from its cross-validation fold that held the series
out (`TeacherOutputs.member_oof`), so the members disagree as they do on series they never saw (docs/dlf.md,
"Design points").
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import check
from ...models import eval_mode
from ..base import Distiller, member_targets, register
from .gaussian import e_step, helmert, neg_joint, neg_q, noise_variance, predictive_stats, prior_mmd

PREFIX = "dlf."
SOFTPLUS_ONE = math.log(math.e - 1)   # softplus of this is 1
VAR_FLOOR = 1e-4
NOISE_RATE = 0.1                      # em_noise: weight of each batch's closed-form variance


class DLFHeads(nn.Module):
    """Phi, L and the noise variance: everything of the model beyond the student's mu."""

    def __init__(self, feature_dim: int, n_classes: int, rank: int, hetero: bool, shared: bool = False):
        super().__init__()
        self.phi = nn.Linear(feature_dim, rank)
        self.l_lower = nn.Parameter(torch.zeros(n_classes, n_classes))
        self.l_diag = nn.Parameter(torch.full((n_classes,), SOFTPLUS_ONE))
        self.noise = nn.Linear(feature_dim, 1) if hetero else None
        self.var_raw = None if hetero else nn.Parameter(torch.tensor(SOFTPLUS_ONE))
        self.shared_raw = nn.Parameter(torch.tensor(SOFTPLUS_ONE)) if shared else None  # tau^2 (contrast)
        if hetero:
            nn.init.zeros_(self.noise.weight)
            nn.init.constant_(self.noise.bias, SOFTPLUS_ONE)

    @property
    def hetero(self) -> bool:
        return self.noise is not None

    def L(self) -> torch.Tensor:
        return torch.tril(self.l_lower, -1) + torch.diag(F.softplus(self.l_diag))

    def variance(self, feature: torch.Tensor) -> torch.Tensor:
        """Noise variance per point, (B,)."""
        raw = self.noise(feature).squeeze(1) if self.hetero else self.var_raw.expand(len(feature))
        return F.softplus(raw) + VAR_FLOOR

    def shared_variance(self) -> torch.Tensor | None:
        """tau^2, the variance all members share at a prefix (contrast models), or None."""
        return None if self.shared_raw is None else F.softplus(self.shared_raw) + VAR_FLOOR

    def predictive_variance(self, feature: torch.Tensor) -> torch.Tensor:
        """(B,) the variance `noise=True` adds to a draw: tau^2 for contrast models, else sigma^2."""
        shared = self.shared_variance()
        return self.variance(feature) if shared is None else shared.expand(len(feature))

    @staticmethod
    @torch.no_grad()
    def set_variance(raw: nn.Parameter, value: torch.Tensor) -> None:
        """Move a softplus-parametrised variance towards `value` by NOISE_RATE (the closed-form M-step)."""
        current = F.softplus(raw) + VAR_FLOOR
        target = (current + NOISE_RATE * (value - current)).clamp_min(2 * VAR_FLOOR) - VAR_FLOOR
        raw.copy_(target + torch.log(-torch.expm1(-target)))  # softplus^-1

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], where: str) -> "DLFHeads":
        state = {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}
        check("phi.weight" in state, f"{where}: not a dlf student (no {PREFIX}* tensors in its checkpoint)")
        rank, feature_dim = state["phi.weight"].shape
        heads = cls(feature_dim, state["l_diag"].shape[0], rank, "noise.weight" in state, "shared_raw" in state)
        heads.load_state_dict(state)
        return heads.eval()


class DLFStudent(nn.Module):
    """A student with its DLF heads: forward gives mu; `sample` draws logits after one backbone pass."""

    def __init__(self, student: nn.Module, heads: DLFHeads):
        super().__init__()
        self.student, self.heads = student, heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x).logits

    def sample(self, x: torch.Tensor, samples: int, noise: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """(S, B, c) logit draws mu + |Phi| L eps (+ sqrt(var) eps' with noise=True: tau^2 for contrast
        models, sigma^2 otherwise)."""
        feature, _ = self.student.encode(x)
        mu, phi, L = self.student.head(feature), self.heads.phi(feature), self.heads.L()
        eps = torch.randn((samples, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
        draws = mu + phi.norm(dim=1)[:, None] * (eps @ L.T)
        if noise:
            eps = torch.randn((samples, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
            draws = draws + self.heads.predictive_variance(feature).sqrt()[:, None] * eps
        return draws


class Predictive(NamedTuple):
    probs: torch.Tensor        # (B, c): mean of the sampled softmaxes
    entropy: torch.Tensor      # (B,): entropy of probs
    mutual_info: torch.Tensor  # (B,): entropy minus the mean entropy of the draws


def load(run_dir: str | Path) -> DLFStudent:
    """The student and heads of a finished dlf run directory."""
    from ...rundir import MODEL_FILE
    from ...train import load_model
    path = Path(run_dir) / MODEL_FILE
    student, _, tensors = load_model(path)
    return DLFStudent(student, DLFHeads.from_tensors(tensors, str(path))).eval()


@torch.no_grad()
def predictive(model, x: torch.Tensor, samples: int = 1024, noise: bool = False,
               generator: torch.Generator | None = None) -> Predictive:
    """Predictive distribution and uncertainty of a DLF distiller, DLFStudent or run directory."""
    check(isinstance(samples, int) and samples >= 1, f"samples must be a positive integer, got {samples!r}")
    if isinstance(model, (str, Path)):
        model = load(model)
    elif isinstance(model, DLF):
        model = model.predictor
    check(isinstance(model, DLFStudent), f"predictive needs a dlf model, got {type(model).__name__}")
    with eval_mode(model):
        draws = model.sample(x, samples, noise, generator)
    return Predictive(*predictive_stats(draws))


@register
class DLF(Distiller):
    name = "dlf"
    description = "DLF: Gaussian logits, mean mu and covariance norm(Phi)^2 LL^T, fitted to ensemble members by EM"
    defaults = {"weight": 1.0, "ce_weight": 1.0, "rank": 8, "hetero": 0, "mmd": 1.0, "center": 0,
                "contrast": 0, "em_noise": 0, "oof": 0}
    two_stage = True   # epochs before the warm-up end are the MMD-penalised initialisation

    @classmethod
    def resolve_options(cls, options: dict) -> dict:
        o = super().resolve_options(options)
        check(isinstance(o["rank"], int) and o["rank"] >= 1, f"dlf option rank must be a positive integer, "
                                                             f"got {o['rank']!r}")
        for key in ("hetero", "center", "contrast", "em_noise", "oof"):
            check(o[key] in (0, 1), f"dlf option {key} must be 0 or 1, got {o[key]!r}")
        check(not (o["hetero"] and o["em_noise"]), "dlf options hetero and em_noise exclude each other "
                                                   "(a per-prefix variance has no closed-form M-step)")
        return o

    def __init__(self, student, teacher, options=None, warmup=0):
        super().__init__(student, teacher, options, warmup)
        check(teacher is not None, "dlf needs a teacher (its members' logits)")
        o = self.options
        self.members = teacher.members
        check(not o["contrast"] or self.members >= 2, f"dlf option contrast needs a teacher ensemble of 2 or more "
                                                      f"members, the teacher has {self.members}")
        self.heads = DLFHeads(student.feature_dim, teacher.n_classes, o["rank"], bool(o["hetero"]),
                              shared=bool(o["contrast"]))
        # the initialisation's free factors W_i = Z_i^T, one per member (or rotated member), drawn from the prior
        self.factors = nn.Parameter(torch.randn(self.members, o["rank"], teacher.n_classes))
        self._sums: dict[str, float] = {}

    @property
    def predictor(self) -> DLFStudent:
        return DLFStudent(self.student, self.heads)

    def distill_losses(self, out, batch, epoch):
        targets = member_targets(batch, self.members, "dlf", out_of_fold=bool(self.options["oof"]))
        if self.options["center"]:
            targets = targets - targets.mean(2, keepdim=True)
        P, L, var = self.heads.phi(out.feature), self.heads.L(), self.heads.variance(out.feature)
        closed = bool(self.options["em_noise"])
        var = var.detach() if closed else var
        scale = self.options["weight"] / (self.members * len(P))
        parts = self._parts(targets, out.logits, var)   # [(residuals (m, B, c), noise variance (B,), factors)]
        if epoch < self.warmup:
            loss = {"dlf_init": scale * sum(neg_joint(R, P, L, v, W) for R, v, W in parts),
                    "dlf_mmd": self.options["mmd"] * prior_mmd(self.factors)}
            posts = [None] * len(parts)
        else:
            posts = [e_step(R, P, L, v) for R, v, _ in parts]
            loss = {"dlf": scale * sum(neg_q(R, P, L, v, post) for (R, v, _), post in zip(parts, posts))}
        if closed and self.training:
            self._closed_form_noise(parts, posts, P, L)
        tau = self.heads.shared_variance()
        self._note(var=var.mean().item(), spread=(P.pow(2).sum(1).mean() * L.pow(2).sum() / L.shape[0]).item(),
                   **({} if tau is None else {"shared": tau.item()}))
        return loss

    def _closed_form_noise(self, parts: list[tuple], posts: list, P: torch.Tensor, L: torch.Tensor) -> None:
        """em_noise: move sigma^2 (and, for contrast models, tau^2) towards their closed-form M-steps."""
        R, _, W = parts[0]
        self.heads.set_variance(self.heads.var_raw, noise_variance(R, P, L, posts[0], W))
        if len(parts) > 1:  # the mean's closed-form variance is sigma^2 + n tau^2
            R, _, W = parts[1]
            sigma2 = F.softplus(self.heads.var_raw) + VAR_FLOOR
            self.heads.set_variance(self.heads.shared_raw, (noise_variance(R, P, L, posts[1], W) - sigma2) / self.members)

    def _parts(self, targets: torch.Tensor, mu: torch.Tensor, var: torch.Tensor) -> list[tuple]:
        """The members' residuals as groups sharing one noise variance: all n members minus mu; or, for
        contrast models, the n - 1 contrasts (noise sigma^2) and sqrt(n) (mean - mu) (sigma^2 + n tau^2)."""
        if not self.options["contrast"]:
            return [(targets.transpose(0, 1) - mu, var, self.factors)]
        rotated = torch.einsum("jn,bnc->jbc", helmert(self.members, targets.dtype, targets.device), targets)
        n = self.members
        tau = self.heads.shared_variance()
        tau = tau.detach() if self.options["em_noise"] else tau
        return [(rotated[:-1], var, self.factors[:-1]),
                (rotated[-1:] - n ** 0.5 * mu, var + n * tau, self.factors[-1:])]

    def _note(self, **values: float) -> None:
        for k, v in values.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._sums["n"] = self._sums.get("n", 0) + 1

    def diagnostics(self) -> dict[str, float]:
        sums, self._sums = self._sums, {}
        n = sums.pop("n", 0)
        return {f"dlf_{k}": v / n for k, v in sums.items()} if n else {}

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return {PREFIX + k: v.detach().cpu() for k, v in self.heads.state_dict().items()}
