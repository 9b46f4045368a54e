"""tekap: teacher knowledge augmentation (Hossain, Akhter, Hong & Huh, "Single Teacher, Multiple
Perspectives: Teacher Knowledge Augmentation for Enhanced Knowledge Distillation", ICLR 2025).

One teacher is turned into several by perturbing its outputs as the official code does,
z~ = 0.9 z + 0.1 eps with eps ~ N(0, I) (absolute, whatever the scale of z), drawn afresh per view and
batch. Each of the `copies` views adds its own KD term on top of the full teacher's:
    loss = weight * [KD(s, t) + view_weight * sum_k KD(s, t~_k)],   KD(s, t) = tau^2 KL(p_t^tau || p_s^tau)
         + feature_weight * [MSE(A f_s, f_t) + sum_k MSE(A f_s, f~_t,k)]            (off by default)
view_weight 0.8 as in the official KD + TeKAP code (which also multiplies the view terms by its CE weight,
1 here). tau 2 as in the GDPD release's KD. Feature views (A: a linear adapter from the student's to the
teacher's feature width) follow the official feature-level code, where each view adds the feature loss
at full weight; the official code pairs them with a feature-distillation method, so they are an option
(feature_weight > 0) and the default is the logit-level TeKAP on KD. copies 5 is this project's choice
(the official default is not known here).
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check
from .base import Distiller, register
from .kd import soft_kl


def perturb(x: torch.Tensor, copies: int) -> torch.Tensor:
    """(B, ...) -> (copies, B, ...): 0.9 x + 0.1 N(0, 1), as the official TeKAP code."""
    return 0.9 * x + 0.1 * torch.randn((copies, *x.shape), dtype=x.dtype, device=x.device)


def tekap_kd(s_logits: torch.Tensor, t_logits: torch.Tensor, views: torch.Tensor, tau: float,
             view_weight: float) -> torch.Tensor:
    """KD to the teacher plus view_weight times the KD to each perturbed view (unweighted overall)."""
    return soft_kl(s_logits, t_logits, tau) + view_weight * sum(soft_kl(s_logits, v, tau) for v in views)


def tekap_feature(s_feat: torch.Tensor, t_feat: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
    """MSE to the teacher feature plus the MSE to each perturbed view; s_feat in teacher width."""
    return F.mse_loss(s_feat, t_feat) + sum(F.mse_loss(s_feat, v) for v in views)


@register
class TeKAP(Distiller):
    name = "tekap"
    description = "teacher knowledge augmentation: KD to the teacher and to noise-perturbed teacher views"
    defaults = {"weight": 1.0, "temperature": 2.0, "copies": 5, "view_weight": 0.8, "feature_weight": 0.0}
    positive = ("temperature",)

    @classmethod
    def resolve_options(cls, options: dict) -> dict:
        o = super().resolve_options(options)
        check(float(o["copies"]).is_integer() and o["copies"] >= 1,
              f"tekap option 'copies' must be a positive integer, got {o['copies']!r}")
        return o

    def __init__(self, student, teacher, options=None, warmup=0):
        super().__init__(student, teacher, options, warmup)
        self.adapter = nn.Linear(student.feature_dim, teacher.feature_dim) if self.options["feature_weight"] else None

    def distill_losses(self, out, batch, epoch):
        o, t = self.options, batch.teacher
        copies = int(o["copies"])
        kd = tekap_kd(out.logits, t.logits, perturb(t.logits, copies), o["temperature"], o["view_weight"])
        losses = {"tekap_kd": o["weight"] * kd}
        if self.adapter is not None:
            feature = tekap_feature(self.adapter(out.feature), t.feature, perturb(t.feature, copies))
            losses["tekap_feature"] = o["feature_weight"] * feature
        return losses
