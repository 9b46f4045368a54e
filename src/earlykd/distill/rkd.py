"""rkd: relational KD (Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019).

On the feature vectors of a batch, with Huber = smooth L1 (beta 1), mean over entries:
    loss = weight * (distance * Huber(psi_D(s), psi_D(t)) + angle * Huber(psi_A(s), psi_A(t)))
    psi_D(x)_ij  = ||x_i - x_j|| / mu,  mu = mean of ||x_k - x_l|| over pairs k != l
    psi_A(x)_ijk = <e_ij, e_kj>,  e_ij = (x_i - x_j) / ||x_i - x_j||
Defaults distance 25, angle 50 as in the paper (no GDPD-release default is known). Relations live in
each model's own space, so no adapter is needed and the loss is invariant to scaling either feature.
"""
import torch
import torch.nn.functional as F

from .base import Distiller, register


def distance_relation(x: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, B) pairwise distances divided by their mean over distinct pairs."""
    n = x.shape[0]
    off_diagonal = 1 - torch.eye(n, dtype=x.dtype, device=x.device)
    squared = (x.unsqueeze(0) - x.unsqueeze(1)).pow(2).sum(2)
    dist = squared.clamp_min(1e-12).sqrt() * off_diagonal
    mean = dist.sum() / max(n * (n - 1), 1)
    return dist / mean.clamp_min(1e-12)


def angle_relation(x: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, B, B): entry [j, i, k] is the cosine of the angle at x_j between x_i and x_k."""
    e = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), dim=2)   # e[j, i] = unit(x_i - x_j)
    return e @ e.transpose(1, 2)


def rkd_losses(s_feat: torch.Tensor, t_feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unweighted (distance, angle) Huber losses between student and teacher relations."""
    distance = F.smooth_l1_loss(distance_relation(s_feat), distance_relation(t_feat))
    angle = F.smooth_l1_loss(angle_relation(s_feat), angle_relation(t_feat))
    return distance, angle


@register
class RKD(Distiller):
    name = "rkd"
    description = "relational KD: Huber loss on batch distance and angle structure of features"
    defaults = {"weight": 1.0, "distance": 25.0, "angle": 50.0}

    def distill_losses(self, out, batch, epoch):
        distance, angle = rkd_losses(out.feature, batch.teacher.feature)
        w = self.options["weight"]
        return {"rkd_distance": w * self.options["distance"] * distance,
                "rkd_angle": w * self.options["angle"] * angle}
