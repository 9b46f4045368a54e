"""ttm: transformed teacher matching (Zheng & Yang, "Knowledge Distillation Based on Transformed
Teacher Matching", ICLR 2024).

The temperature acts on the teacher only: its probabilities are power-transformed and renormalised,
p_t^(1/T) / sum p_t^(1/T) = softmax(t / T), and matched by the untempered student (no T^2 factor):
    loss = weight * KL(softmax(t / T) || softmax(s))
No GDPD-release default is known; T = 2 matches the project's KD temperature (the paper tunes T and
weight per dataset).
"""
import torch
import torch.nn.functional as F

from .base import Distiller, register


def ttm_loss(s_logits: torch.Tensor, t_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    log_target = F.log_softmax(t_logits / temperature, dim=1)
    return F.kl_div(F.log_softmax(s_logits, dim=1), log_target, reduction="batchmean", log_target=True)


@register
class TTM(Distiller):
    name = "ttm"
    description = "transformed teacher matching: KL from power-transformed teacher to untempered student"
    defaults = {"weight": 1.0, "temperature": 2.0}

    def distill_losses(self, out, batch, epoch):
        return {"ttm": self.options["weight"] * ttm_loss(out.logits, batch.teacher.logits, self.options["temperature"])}
