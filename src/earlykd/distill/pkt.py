"""pkt: probabilistic knowledge transfer (Passalis & Tefas, "Learning Deep Representations with
Probabilistic Knowledge Transfer", ECCV 2018).

Cosine kernel K_ij = (cos(x_i, x_j) + 1) / 2 over the batch, rows normalised to conditional
distributions P_ij = K_ij / sum_k K_ik (computed separately for student and teacher features):
    loss = weight * mean_i sum_j P^t_ij log((P^t_ij + eps) / (P^s_ij + eps)),  eps = 1e-7
Each kernel lives in its own feature space, so widths may differ without an adapter. The authors'
code averages over all B^2 entries instead of summing over j; the sum (a per-row KL) is used here so
that weight 1 (no GDPD-release default is known) gives a term of comparable size to the others.
"""
import torch
import torch.nn.functional as F

from .base import Distiller, register


def conditional_similarity(x: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, B) row-stochastic cosine-similarity kernel."""
    x = F.normalize(x, dim=1)
    kernel = (x @ x.T + 1) / 2
    return kernel / kernel.sum(1, keepdim=True)


def pkt_loss(s_feat: torch.Tensor, t_feat: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    p_s, p_t = conditional_similarity(s_feat), conditional_similarity(t_feat)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).sum(1).mean()


@register
class PKT(Distiller):
    name = "pkt"
    description = "probabilistic knowledge transfer: KL between batch cosine-similarity distributions"
    defaults = {"weight": 1.0}

    def distill_losses(self, out, batch, epoch):
        return {"pkt": self.options["weight"] * pkt_loss(out.feature, batch.teacher.feature)}
