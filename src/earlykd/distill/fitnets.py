"""fitnets (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015), with the GDPD release's schedule.

    warm-up (epoch < warm-up):  loss = weight * mean_{b,t,c} (W h_s[b, t] - h_t[b, t])^2     (hint only)
    after:                      loss = CE(student logits on the prefix, y)                   (CE only)
W is a per-step linear regressor from the student's hidden width to the teacher's, without bias and
initialised uniform in [-0.005, 0.005], as the release's 1x1-convolution regressor. The sequences are
paired in time (base.pair_steps): a truncated student's m steps against the teacher's first m steps, a
stretched student against all of them. The checkpoint is selected after the warm-up.
Options: ce_in_warmup = 1 adds CE during the warm-up (the former behaviour); time_warp = 1 interpolates a
shorter student onto all the teacher's steps (the former, time-warped target).
"""
import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Distiller, pair_steps, register


def hint_loss(regressor: nn.Module, s_hidden: torch.Tensor, t_hidden: torch.Tensor, warp: bool = False) -> torch.Tensor:
    s_hidden, t_hidden = pair_steps(s_hidden, t_hidden, warp)
    return F.mse_loss(regressor(s_hidden), t_hidden)


@register
class FitNets(Distiller):
    name = "fitnets"
    description = "hint regression of the hidden sequence alone during warm-up, CE alone after"
    defaults = {"weight": 1.0, "ce_in_warmup": 0, "time_warp": 0}
    two_stage = True

    def __init__(self, student, teacher, options=None, warmup=0):
        super().__init__(student, teacher, options, warmup)
        self.regressor = nn.Linear(student.hidden_dim, teacher.hidden_dim, bias=False)
        nn.init.uniform_(self.regressor.weight, -0.005, 0.005)

    def trains_ce(self, epoch: int) -> bool:
        return epoch >= self.warmup or bool(self.options["ce_in_warmup"])

    def forward_train(self, batch: Batch, epoch: int):
        out = self.student(batch.x)
        if epoch >= self.warmup:
            return out.logits, {"ce": F.cross_entropy(out.logits, batch.y)}
        o = self.options
        losses = {"hint": o["weight"] * hint_loss(self.regressor, out.hidden, batch.teacher.hidden, bool(o["time_warp"]))}
        if o["ce_in_warmup"]:
            losses["ce"] = F.cross_entropy(out.logits, batch.y)
        return out.logits, losses
