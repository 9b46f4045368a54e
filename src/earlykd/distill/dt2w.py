"""dt2w: shape-aligned temporal distillation (Qiao, Hu, Jiang, Suganthan & Savitha, "Class-Incremental
Learning on Multivariate Time Series via Shape-Aligned Temporal Distillation", ICASSP 2023).

    loss = weight * mean_batch softDTW_gamma(h_s, h_t[:, :, idx])
soft-DTW with squared Euclidean step costs, unnormalised (see softdtw.py). As in the GDPD release,
gamma 1.2 and the teacher's channels are sub-sampled to the student's width (evenly spaced indices;
repeated when the teacher is narrower). soft-DTW aligns sequences of different lengths itself.
weight 0.01 = the DT2W authors' default feature-map weight (the raw soft-DTW value is large).
"""
import torch

from .base import Distiller, register
from .softdtw import soft_dtw


def subsample_channels(hidden: torch.Tensor, width: int) -> torch.Tensor:
    """(B, T, H) -> (B, T, width) keeping evenly spaced channels."""
    index = torch.linspace(0, hidden.shape[2] - 1, width, device=hidden.device).round().long()
    return hidden[:, :, index]


def dt2w_loss(s_hidden: torch.Tensor, t_hidden: torch.Tensor, gamma: float) -> torch.Tensor:
    return soft_dtw(s_hidden, subsample_channels(t_hidden, s_hidden.shape[2]), gamma).mean()


@register
class DT2W(Distiller):
    name = "dt2w"
    description = "soft-DTW between student and (channel-subsampled) teacher hidden sequences"
    defaults = {"weight": 0.01, "gamma": 1.2}

    def distill_losses(self, out, batch, epoch):
        return {"dt2w": self.options["weight"] * dt2w_loss(out.hidden, batch.teacher.hidden, self.options["gamma"])}
