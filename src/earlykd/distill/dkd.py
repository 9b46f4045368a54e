"""dkd: decoupled KD (Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation", CVPR 2022).

With p = softmax(z / tau), target class g, b = (p_g, 1 - p_g) and p^ = softmax over non-target classes:
    TCKD = KL(b_t || b_s),  NCKD = KL(p^_t || p^_s)
    loss = weight * tau^2 * mean_batch(alpha * TCKD + beta * NCKD)
Classical KD decomposes as KL(p_t || p_s) = TCKD + (1 - p_t,g) * NCKD. Defaults alpha 1, beta 8,
tau 2 as in the GDPD release (the paper's linear loss warm-up over the first epochs is not used).
"""
import torch
import torch.nn.functional as F

from .base import Distiller, register


def _binary_and_rest(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of (target, not target) and log-softmax over the non-target classes."""
    log_all = logits.logsumexp(1)
    others = logits[~target].view(logits.shape[0], -1)
    log_binary = torch.stack([logits[target] - log_all, others.logsumexp(1) - log_all], 1)
    return log_binary, F.log_softmax(others, 1)


def dkd_parts(s_logits, t_logits, labels, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (TCKD, NCKD), each (B,), at temperature tau (without the tau^2 factor)."""
    target = F.one_hot(labels, s_logits.shape[1]).bool()
    bin_s, rest_s = _binary_and_rest(s_logits / tau, target)
    bin_t, rest_t = _binary_and_rest(t_logits / tau, target)
    tckd = (bin_t.exp() * (bin_t - bin_s)).sum(1)
    nckd = (rest_t.exp() * (rest_t - rest_s)).sum(1)
    return tckd, nckd


def dkd_loss(s_logits, t_logits, labels, alpha: float, beta: float, tau: float) -> torch.Tensor:
    tckd, nckd = dkd_parts(s_logits, t_logits, labels, tau)
    return tau * tau * (alpha * tckd + beta * nckd).mean()


@register
class DKD(Distiller):
    name = "dkd"
    description = "decoupled KD: target-class binary KL + weighted non-target-class KL"
    defaults = {"weight": 1.0, "alpha": 1.0, "beta": 8.0, "temperature": 2.0}

    def distill_losses(self, out, batch, epoch):
        tau = self.options["temperature"]
        tckd, nckd = dkd_parts(out.logits, batch.teacher.logits, batch.y, tau)
        scale = self.options["weight"] * tau * tau
        return {"tckd": scale * self.options["alpha"] * tckd.mean(),
                "nckd": scale * self.options["beta"] * nckd.mean()}
