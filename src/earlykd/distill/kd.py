"""kd (Base-KD, Hinton et al. 2015): CE + weight * tau^2 * KL(softmax(t / tau) || softmax(s / tau)).

The GDPD release uses tau = 2; weight 1 here.
"""
import torch
import torch.nn.functional as F

from .base import Distiller, register


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """tau^2 * KL(softmax(teacher / tau) || softmax(student / tau)), mean over the batch."""
    log_s = F.log_softmax(student_logits / tau, dim=1)
    log_t = F.log_softmax(teacher_logits / tau, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * tau * tau


@register
class KD(Distiller):
    name = "kd"
    description = "Hinton KD: KL to the teacher's tempered probabilities (Base-KD)"
    defaults = {"weight": 1.0, "temperature": 2.0}

    positive = ("temperature",)

    def distill_losses(self, out, batch, epoch):
        kl = soft_kl(out.logits, batch.teacher.logits, self.options["temperature"])
        return {"kd": self.options["weight"] * kl}
