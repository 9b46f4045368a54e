"""pkt: probabilistic knowledge transfer (Passalis & Tefas, "Learning Deep Representations with
Probabilistic Knowledge Transfer", ECCV 2018), normalised as in RepDistiller's PKT (the authors' code).

Each feature is scaled to unit norm (x / (||x|| + eps)), the cosine kernel K_ij = (cos(x_i, x_j) + 1) / 2
is taken over the batch, and rows are normalised to conditional distributions P_ij = K_ij / sum_k K_ik,
separately for student and teacher features. With eps = 1e-7:
    loss = weight * mean_{i,j} P^t_ij log((P^t_ij + eps) / (P^s_ij + eps))     (mean over all B^2 entries)
weight 30000 = RepDistiller's weight for PKT (its "-b 30000"). Each kernel lives in its own feature
space, so widths may differ without an adapter.
"""
import torch

from .base import Distiller, register


def conditional_similarity(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """(B, D) -> (B, B) row-stochastic cosine-similarity kernel."""
    x = x / (x.norm(dim=1, keepdim=True) + eps)
    kernel = (x @ x.T + 1) / 2
    return kernel / kernel.sum(1, keepdim=True)


def pkt_loss(s_feat: torch.Tensor, t_feat: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    p_s, p_t = conditional_similarity(s_feat, eps), conditional_similarity(t_feat, eps)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


@register
class PKT(Distiller):
    name = "pkt"
    description = "probabilistic knowledge transfer: KL between batch cosine-similarity distributions"
    defaults = {"weight": 30000.0}

    def distill_losses(self, out, batch, epoch):
        return {"pkt": self.options["weight"] * pkt_loss(out.feature, batch.teacher.feature)}
