"""at: attention transfer over time (Zagoruyko & Komodakis, "Paying More Attention to Attention",
ICLR 2017), on the hidden sequences.

    a(h)_t = mean_c h_{t,c}^2,   loss = weight * mean_{b,t} (a_s / ||a_s|| - a_t / ||a_t||)^2
The maps are taken over the same time positions (base.pair_steps): a truncated student's m steps are
compared with the teacher's first m steps; a stretched student (as many steps as the teacher) with all
of them. Widths may differ (the map averages over channels). weight 1000 as in the original code
(beta = 1e3 with this mean form); the GDPD release uses the same map on LSTM hidden sequences.
Option time_warp = 1 (the former behaviour): interpolate a shorter student onto all the teacher's steps.
"""
import torch
import torch.nn.functional as F

from .base import Distiller, pair_steps, register


def energy(hidden: torch.Tensor) -> torch.Tensor:
    """(B, T, H) -> (B, T, 1): channel-mean of squares."""
    return hidden.pow(2).mean(2, keepdim=True)


def at_loss(s_hidden: torch.Tensor, t_hidden: torch.Tensor, warp: bool = False) -> torch.Tensor:
    """Maps paired in time, each L2-normalised over its steps, then the mean squared difference."""
    s_map, t_map = pair_steps(energy(s_hidden), energy(t_hidden), warp)
    return (F.normalize(s_map.squeeze(2), dim=1) - F.normalize(t_map.squeeze(2), dim=1)).pow(2).mean()


@register
class AT(Distiller):
    name = "at"
    description = "attention transfer: match normalised channel energy over time of hidden sequences"
    defaults = {"weight": 1000.0, "time_warp": 0}

    def distill_losses(self, out, batch, epoch):
        loss = at_loss(out.hidden, batch.teacher.hidden, bool(self.options["time_warp"]))
        return {"at": self.options["weight"] * loss}
