"""fitnets (Romero et al., ICLR 2015): a per-step linear regressor maps the student's hidden
sequence (interpolated over time to the teacher's steps) to the teacher's; MSE hint loss.

As in the GDPD release, the hint is added during the warm-up only (CE + weight * hint),
then training continues on CE alone; the checkpoint is selected after the warm-up.
"""
import torch.nn.functional as F
from torch import nn

from .base import Distiller, align_steps, register


@register
class FitNets(Distiller):
    name = "fitnets"
    description = "hint regression of the hidden sequence during warm-up, CE after"
    defaults = {"weight": 1.0}
    two_stage = True

    def __init__(self, student, teacher, options=None, warmup=0):
        super().__init__(student, teacher, options, warmup)
        self.regressor = nn.Linear(student.hidden_dim, teacher.hidden_dim)

    def distill_losses(self, out, batch, epoch):
        if epoch >= self.warmup:
            return {}
        target = batch.teacher.hidden
        hint = self.regressor(align_steps(out.hidden, target.shape[1]))
        return {"hint": self.options["weight"] * F.mse_loss(hint, target)}
