"""at: attention transfer over time (Zagoruyko & Komodakis, "Paying More Attention to Attention",
ICLR 2017), on the hidden sequences.

    a(h)_t = mean_c h_{t,c}^2,   loss = weight * mean_{b,t} (a_s / ||a_s|| - a_t / ||a_t||)^2
The student's map is linearly interpolated over time to the teacher's steps before normalising, so
widths and lengths may differ. weight 1000 as in the original code (beta = 1e3 with this mean form).
"""
import torch
import torch.nn.functional as F

from .base import Distiller, align_steps, register


def attention_over_time(hidden: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T, H) -> (B, steps): channel-mean of squares, aligned to `steps`, L2-normalised over time."""
    energy = align_steps(hidden.pow(2).mean(2, keepdim=True), steps).squeeze(2)
    return F.normalize(energy, dim=1)


def at_loss(s_hidden: torch.Tensor, t_hidden: torch.Tensor) -> torch.Tensor:
    steps = t_hidden.shape[1]
    return (attention_over_time(s_hidden, steps) - attention_over_time(t_hidden, steps)).pow(2).mean()


@register
class AT(Distiller):
    name = "at"
    description = "attention transfer: match normalised channel energy over time of hidden sequences"
    defaults = {"weight": 1000.0}

    def distill_losses(self, out, batch, epoch):
        return {"at": self.options["weight"] * at_loss(out.hidden, batch.teacher.hidden)}
