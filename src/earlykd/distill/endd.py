"""endd: Proxy-EnD^2, ensemble distribution distillation into a Dirichlet (Ryabinin et al. 2021).

The student's logits z give concentrations alpha = exp(z), so softmax(z) is the Dirichlet's expected
probability and the student alone is a valid classifier. Per input the target is a proxy Dirichlet
with the ensemble's mean probability p and precision
    alpha0 = (K - 1) / (2 * mean_i KL(p || p_i))        (Minka's approximate Dirichlet MLE; docs/dlf.md)
(`spec_order=1`: KL(p_i || p), the order written in the spec), capped at `max_precision`; its
concentrations are beta = alpha0 * p + 1 (`plus_one`). Loss = ce_weight * CE(z, y) + weight *
KL(Dir(alpha) || Dir(beta)) (`reverse=1`, as Proxy-EnD^2; 0: KL(Dir(beta) || Dir(alpha))), mean over the batch.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import check
from ..models import eval_mode
from .base import Distiller, register
from .dlf.method import Predictive

LOGIT_CAP = 20.0   # alpha = exp(z) stays finite


def concentrations(logits: torch.Tensor) -> torch.Tensor:
    return logits.clamp(-LOGIT_CAP, LOGIT_CAP).exp()


def proxy_target(members: torch.Tensor, max_precision: float = 1e3, plus_one: bool = True,
                 spec_order: bool = False) -> torch.Tensor:
    """Members' logits (B, M, c) -> the proxy Dirichlet's concentrations (B, c)."""
    log_p = torch.log_softmax(members.double(), -1)                           # (B, M, c)
    log_mean = torch.logsumexp(log_p, 1) - torch.log(torch.tensor(float(members.shape[1]), dtype=log_p.dtype))
    mean = log_mean.exp()
    if spec_order:
        kl = (log_p.exp() * (log_p - log_mean[:, None])).sum(-1).mean(1)
    else:
        kl = (mean[:, None] * (log_mean[:, None] - log_p)).sum(-1).mean(1)
    k = members.shape[2]
    precision = ((k - 1) / (2 * kl.clamp_min(1e-12))).clamp(max=max_precision)
    return (precision[:, None] * mean + (1.0 if plus_one else 0.0)).to(members.dtype)


def dirichlet_kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KL(Dir(a) || Dir(b)) per row, (B, c) -> (B,)."""
    a0, b0 = a.sum(-1), b.sum(-1)
    return (torch.lgamma(a0) - torch.lgamma(a).sum(-1) - torch.lgamma(b0) + torch.lgamma(b).sum(-1)
            + ((a - b) * (torch.digamma(a) - torch.digamma(a0)[:, None])).sum(-1))


def dirichlet_stats(alpha: torch.Tensor) -> Predictive:
    """Expected probabilities, entropy of them, and mutual information = entropy - E[entropy of pi]."""
    a0 = alpha.sum(-1, keepdim=True)
    probs = alpha / a0
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum(-1)
    expected = -(probs * (torch.digamma(alpha + 1) - torch.digamma(a0 + 1))).sum(-1)
    return Predictive(probs, entropy, (entropy - expected).clamp_min(0))


@torch.no_grad()
def predictive(model, x: torch.Tensor) -> Predictive:
    """The Dirichlet predictive of an endd student (a Classifier, the distiller or a run directory)."""
    if isinstance(model, (str, Path)):
        from ..rundir import MODEL_FILE
        from ..train import load_model
        model = load_model(Path(model) / MODEL_FILE)[0]
    elif isinstance(model, EnDD):
        model = model.student
    check(hasattr(model, "encode"), f"endd predictive needs a student, got {type(model).__name__}")
    with eval_mode(model):
        logits = model(x).logits
    return dirichlet_stats(concentrations(logits.double()))


@register
class EnDD(Distiller):
    name = "endd"
    description = "Proxy-EnD^2: student logits as Dirichlet log-concentrations, KL to a proxy of the ensemble's"
    defaults = {"weight": 1.0, "ce_weight": 1.0, "max_precision": 1000.0, "plus_one": 1, "reverse": 1,
                "spec_order": 0}

    @classmethod
    def resolve_options(cls, options: dict) -> dict:
        o = super().resolve_options(options)
        for key in ("plus_one", "reverse", "spec_order"):
            check(o[key] in (0, 1), f"endd option {key} must be 0 or 1, got {o[key]!r}")
        check(o["max_precision"] > 0, f"endd option max_precision must be positive, got {o['max_precision']!r}")
        return o

    def distill_losses(self, out, batch, epoch):
        o = self.options
        target = proxy_target(batch.teacher.members.detach(), o["max_precision"], bool(o["plus_one"]),
                              bool(o["spec_order"]))
        alpha = concentrations(out.logits)
        kl = dirichlet_kl(alpha, target) if o["reverse"] else dirichlet_kl(target, alpha)
        return {"endd": o["weight"] * kl.mean()}
