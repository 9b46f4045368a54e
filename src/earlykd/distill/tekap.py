"""tekap: teacher knowledge augmentation (Hossain, Akhter, Hong & Huh, "Single Teacher, Multiple
Perspectives: Teacher Knowledge Augmentation for Enhanced Knowledge Distillation", ICLR 2025).

One teacher is turned into several by Gaussian perturbation of its outputs. With V = the teacher plus
`copies` perturbed views, z~ = z + noise * rms(z) * N(0, I) (rms over the batch, so `noise` is
relative and works for any feature scale):
    loss = weight * mean_V tau^2 KL(softmax(t~ / tau) || softmax(s / tau))           (logit views)
         + feature_weight * mean_V MSE(A(f_s), f~_t)                                 (feature views)
A is a linear adapter from the student's to the teacher's feature width. noise = 0 gives exactly
KD + a feature hint. tau 2 as in the GDPD release's KD; noise 0.1 and 5 copies are this project's
choice (no GDPD-release defaults are known).
"""
import torch
import torch.nn.functional as F
from torch import nn

from .base import Distiller, register
from .kd import soft_kl


def teacher_views(x: torch.Tensor, noise: float, copies: int) -> torch.Tensor:
    """(B, ...) -> (1 + copies, B, ...): x itself, then perturbed copies."""
    scale = noise * x.pow(2).mean().sqrt()
    perturbed = x + scale * torch.randn((copies, *x.shape), dtype=x.dtype, device=x.device)
    return torch.cat([x.unsqueeze(0), perturbed])


def tekap_losses(s_logits, s_feat, t_logit_views, t_feat_views, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Unweighted (logit KD, feature MSE), averaged over the teacher views; s_feat in teacher width."""
    kd = torch.stack([soft_kl(s_logits, view, tau) for view in t_logit_views]).mean()
    feature = torch.stack([F.mse_loss(s_feat, view) for view in t_feat_views]).mean()
    return kd, feature


@register
class TeKAP(Distiller):
    name = "tekap"
    description = "teacher knowledge augmentation: KD and feature hints from noise-perturbed teacher views"
    defaults = {"weight": 1.0, "feature_weight": 1.0, "temperature": 2.0, "noise": 0.1, "copies": 5}

    def __init__(self, student, teacher, options=None, warmup=0):
        super().__init__(student, teacher, options, warmup)
        self.adapter = nn.Linear(student.feature_dim, teacher.feature_dim)

    def distill_losses(self, out, batch, epoch):
        noise, copies = self.options["noise"], max(0, int(self.options["copies"]))
        kd, feature = tekap_losses(out.logits, self.adapter(out.feature),
                                   teacher_views(batch.teacher.logits, noise, copies),
                                   teacher_views(batch.teacher.feature, noise, copies), self.options["temperature"])
        return {"tekap_kd": self.options["weight"] * kd, "tekap_feature": self.options["feature_weight"] * feature}
