"""dlf: Gaussian distillation of a teacher ensemble into one prefix student (DLF, NeurIPS 2025).

Student logits are Gaussian, N(mu(x), |Phi(x)|^2 L L^T): mu is the student's own head, Phi a linear
head on its feature, L lower-triangular with a softplus diagonal. The ensemble members' full-series
logits at the training prefixes are draws of that model plus noise (scalar sigma^2, or a per-prefix
variance from a head when hetero = 1). Epochs before train.warmup fit it with free per-member factors
and an MMD penalty towards the prior; later epochs run EM, one E-step and one optimiser step on -Q
per mini-batch. Loss = ce_weight * CE(mu, y) + weight * (-Q or the initial loss) / (members * batch).
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
from .gaussian import e_step, neg_joint, neg_q, predictive_stats, prior_mmd

PREFIX = "dlf."
SOFTPLUS_ONE = math.log(math.e - 1)   # softplus of this is 1
VAR_FLOOR = 1e-4


class DLFHeads(nn.Module):
    """Phi, L and the noise variance: everything of the model beyond the student's mu."""

    def __init__(self, feature_dim: int, n_classes: int, rank: int, hetero: bool):
        super().__init__()
        self.phi = nn.Linear(feature_dim, rank)
        self.l_lower = nn.Parameter(torch.zeros(n_classes, n_classes))
        self.l_diag = nn.Parameter(torch.full((n_classes,), SOFTPLUS_ONE))
        self.noise = nn.Linear(feature_dim, 1) if hetero else None
        self.var_raw = None if hetero else nn.Parameter(torch.tensor(SOFTPLUS_ONE))
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

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], where: str) -> "DLFHeads":
        state = {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}
        check("phi.weight" in state, f"{where}: not a dlf student (no {PREFIX}* tensors in its checkpoint)")
        rank, feature_dim = state["phi.weight"].shape
        heads = cls(feature_dim, state["l_diag"].shape[0], rank, "noise.weight" in state)
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
        """(S, B, c) logit draws mu + |Phi| L eps (+ sqrt(var) eps' with noise=True)."""
        feature, _ = self.student.encode(x)
        mu, phi, L = self.student.head(feature), self.heads.phi(feature), self.heads.L()
        eps = torch.randn((samples, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
        draws = mu + phi.norm(dim=1)[:, None] * (eps @ L.T)
        if noise:
            eps = torch.randn((samples, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
            draws = draws + self.heads.variance(feature).sqrt()[:, None] * eps
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
def predictive(model, x: torch.Tensor, samples: int = 32, noise: bool = False,
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
    defaults = {"weight": 1.0, "ce_weight": 1.0, "rank": 8, "hetero": 0, "mmd": 1.0, "center": 0}
    two_stage = True   # epochs before the warm-up end are the MMD-penalised initialisation

    @classmethod
    def resolve_options(cls, options: dict) -> dict:
        o = super().resolve_options(options)
        check(isinstance(o["rank"], int) and o["rank"] >= 1, f"dlf option rank must be a positive integer, "
                                                             f"got {o['rank']!r}")
        for key in ("hetero", "center"):
            check(o[key] in (0, 1), f"dlf option {key} must be 0 or 1, got {o[key]!r}")
        return o

    def __init__(self, student, teacher, options=None, warmup=0):
        super().__init__(student, teacher, options, warmup)
        check(teacher is not None, "dlf needs a teacher (its members' logits)")
        o = self.options
        self.members = teacher.members
        self.heads = DLFHeads(student.feature_dim, teacher.n_classes, o["rank"], bool(o["hetero"]))
        # the initialisation's free factors W_i = Z_i^T, one per member, drawn from the prior
        self.factors = nn.Parameter(torch.randn(self.members, o["rank"], teacher.n_classes))
        self._sums: dict[str, float] = {}

    @property
    def predictor(self) -> DLFStudent:
        return DLFStudent(self.student, self.heads)

    def distill_losses(self, out, batch, epoch):
        targets = member_targets(batch, self.members, "dlf")
        if self.options["center"]:
            targets = targets - targets.mean(2, keepdim=True)
        R = targets.transpose(0, 1) - out.logits                      # (n, B, c)
        P, L, var = self.heads.phi(out.feature), self.heads.L(), self.heads.variance(out.feature)
        scale = self.options["weight"] / R[:, :, 0].numel()
        if epoch < self.warmup:
            loss = {"dlf_init": scale * neg_joint(R, P, L, var, self.factors),
                    "dlf_mmd": self.options["mmd"] * prior_mmd(self.factors)}
        else:
            loss = {"dlf": scale * neg_q(R, P, L, var, e_step(R, P, L, var))}
        self._note(var=var.mean().item(), spread=(P.pow(2).sum(1).mean() * L.pow(2).sum() / L.shape[0]).item())
        return loss

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
