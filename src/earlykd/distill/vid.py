"""vid: variational information distillation (Ahn, Hu, Damianou, Lawrence & Dai, CVPR 2019).

A small regressor mu(s) predicts the teacher feature t from the student feature s; each teacher channel
c has a learned variance sigma_c^2 = softplus(v_c) + eps. The loss is the Gaussian NLL (constant dropped):
    loss = weight * mean_{b,c} [ (t_c - mu_c(s))^2 / (2 sigma_c^2) + log(sigma_c^2) / 2 ]
As in the authors' code: variance initialised to 5.0, eps 1e-5; regressor Linear-ReLU-Linear here
(the paper's 1x1 convolutions, for feature vectors).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check
from .base import Distiller, register

EPS = 1e-5


def gaussian_nll(mean: torch.Tensor, variance: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over entries of (target - mean)^2 / (2 variance) + log(variance) / 2; variance broadcasts."""
    return 0.5 * ((target - mean).pow(2) / variance + variance.log()).mean()


@register
class VID(Distiller):
    name = "vid"
    description = "variational information distillation: Gaussian NLL of teacher feature, learned variance"
    defaults = {"weight": 1.0, "init_variance": 5.0}

    @classmethod
    def resolve_options(cls, options: dict) -> dict:
        o = super().resolve_options(options)
        check(o["init_variance"] > EPS, f"vid option 'init_variance' must be > {EPS}, got {o['init_variance']!r}")
        return o

    def __init__(self, student, teacher, options=None, warmup=0):
        super().__init__(student, teacher, options, warmup)
        init = self.options["init_variance"]
        width = teacher.feature_dim
        self.regressor = nn.Sequential(nn.Linear(student.feature_dim, width), nn.ReLU(), nn.Linear(width, width))
        raw = math.log(math.expm1(init - EPS))   # inverse softplus
        self.raw_variance = nn.Parameter(torch.full((width,), raw))

    def variance(self) -> torch.Tensor:
        return F.softplus(self.raw_variance) + EPS

    def distill_losses(self, out, batch, epoch):
        nll = gaussian_nll(self.regressor(out.feature), self.variance(), batch.teacher.feature)
        return {"vid": self.options["weight"] * nll}
