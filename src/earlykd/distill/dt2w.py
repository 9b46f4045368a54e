"""dt2w: shape-aligned temporal distillation (Qiao, Hu, Jiang, Suganthan & Savitha, "Class-Incremental
Learning on Multivariate Time Series via Shape-Aligned Temporal Distillation", ICASSP 2023), with the GDPD
release's schedule.

    warm-up (epoch < warm-up):  CE alone
    after:                      loss = CE + weight * mean_batch softDTW_gamma(h_s, h_t[:, :, idx])
The warm-up is the student run's warm-up (`train.warmup`, half the epochs by default), the same one
GDPD and FitNets use: the release gates this term with the epoch count it uses for GDPD's warm-up, and
selects the checkpoint after it (as here). The DT2W paper's own code has no epoch warm-up; there the term
is off on the first task of class-incremental learning.
soft-DTW with squared Euclidean step costs, unnormalised (softdtw.py), gamma 1.2 as in the release.
idx: the student's width of teacher channels drawn at random for every batch (torch.randperm, so
reproducible under torch.manual_seed), as the release does; a teacher narrower than the student has
its channels repeated. The sequences are paired in time (base.pair_steps): a truncated student's m
steps against the teacher's first m steps, so the alignment cannot map the prefix onto the teacher's
future. weight 0.01 = the DT2W authors' default feature-map weight (the raw soft-DTW value is large).
Options: random_channels = 0 keeps evenly spaced channels (the former behaviour); joint = 1 adds the
term from epoch 0 with no warm-up (the former behaviour); time_warp = 1 aligns a shorter student with
the whole teacher sequence (the former behaviour).
"""
import math

import torch

from .base import Distiller, pair_steps, register
from .softdtw import soft_dtw


def random_channels(width: int, available: int, device=None) -> torch.Tensor:
    """`width` channel indices drawn without replacement (with repeats only when width > available)."""
    draws = [torch.randperm(available) for _ in range(math.ceil(width / available))]
    return torch.cat(draws)[:width].to(device)


def even_channels(width: int, available: int, device=None) -> torch.Tensor:
    return torch.linspace(0, available - 1, width, device=device).round().long()


def subsample_channels(hidden: torch.Tensor, width: int, random: bool = True) -> torch.Tensor:
    """(B, T, H) -> (B, T, width)."""
    pick = random_channels if random else even_channels
    return hidden[:, :, pick(width, hidden.shape[2], hidden.device)]


def dt2w_loss(s_hidden: torch.Tensor, t_hidden: torch.Tensor, gamma: float, random: bool = True,
              warp: bool = False) -> torch.Tensor:
    if not warp and s_hidden.shape[1] < t_hidden.shape[1]:   # soft-DTW itself aligns the other cases
        s_hidden, t_hidden = pair_steps(s_hidden, t_hidden)
    return soft_dtw(s_hidden, subsample_channels(t_hidden, s_hidden.shape[2], random), gamma).mean()


@register
class DT2W(Distiller):
    name = "dt2w"
    description = "soft-DTW from student to random teacher channels of hidden sequences, after warm-up"
    defaults = {"weight": 0.01, "gamma": 1.2, "random_channels": 1, "joint": 0, "time_warp": 0}
    two_stage = True

    positive = ("gamma",)   # soft-DTW's smoothing

    def __init__(self, student, teacher, options=None, warmup=0):
        super().__init__(student, teacher, options, warmup)
        if self.options["joint"]:
            self.warmup = 0

    def distill_losses(self, out, batch, epoch):
        if epoch < self.warmup:
            return {}
        o = self.options
        loss = dt2w_loss(out.hidden, batch.teacher.hidden, o["gamma"], bool(o["random_channels"]), bool(o["time_warp"]))
        return {"dt2w": o["weight"] * loss}
