"""hydra: one shared body, one head per ensemble member (Hydra, Tran et al. 2020).

Head m is distilled from member m's full-series logits: tau^2 KL(softmax(f_m / tau) || softmax(h_m / tau)),
averaged over the heads. The student's own head is KD on the ensemble mean (the same term as `kd`) plus CE,
so the saved student alone (what `evaluate` / `predict` use) is a valid single classifier. Uncertainty
comes from the heads: predictive = their mean probabilities, entropy and mutual information over heads.
Loss = CE(own, y) + weight * [ KD(own; mean) + mean_m KD(head_m; member m) ].
The heads are saved in the checkpoint as `hydra.heads.<m>.*` tensors (`load(run_dir)`).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import check
from ..models import eval_mode
from .base import Distiller, member_targets, register
from .dlf.gaussian import predictive_stats
from .dlf.method import Predictive
from .kd import soft_kl

PREFIX = "hydra."


def _heads(feature_dim: int, n_classes: int, members: int) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(feature_dim, n_classes) for _ in range(members))


class HydraStudent(nn.Module):
    """The student with its member heads: forward gives the student's own logits; `head_logits` all heads'."""

    def __init__(self, student: nn.Module, heads: nn.ModuleList):
        super().__init__()
        self.student, self.heads = student, heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x).logits

    def head_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(members, B, c) after one backbone pass."""
        feature, _ = self.student.encode(x)
        return torch.stack([h(feature) for h in self.heads])


def load(run_dir: str | Path) -> HydraStudent:
    """The student and heads of a finished hydra run directory."""
    from ..rundir import MODEL_FILE
    from ..train import load_model
    path = Path(run_dir) / MODEL_FILE
    student, _, tensors = load_model(path)
    state = {k[len(PREFIX) + len("heads."):]: v for k, v in tensors.items() if k.startswith(PREFIX + "heads.")}
    check(state, f"{path}: not a hydra student (no {PREFIX}* tensors in its checkpoint)")
    members = 1 + max(int(k.split(".")[0]) for k in state)
    n_classes, feature_dim = state["0.weight"].shape
    heads = _heads(feature_dim, n_classes, members)
    heads.load_state_dict(state)
    return HydraStudent(student, heads).eval()


@torch.no_grad()
def predictive(model, x: torch.Tensor) -> Predictive:
    """Mean of the heads' probabilities, its entropy and the mutual information over heads."""
    if isinstance(model, (str, Path)):
        model = load(model)
    elif isinstance(model, Hydra):
        model = model.predictor
    check(isinstance(model, HydraStudent), f"hydra predictive needs a hydra model, got {type(model).__name__}")
    with eval_mode(model):
        logits = model.head_logits(x)
    return Predictive(*predictive_stats(logits))


@register
class Hydra(Distiller):
    name = "hydra"
    description = "Hydra: shared body, one head per ensemble member (KL at tau to that member); own head KD on the mean"
    defaults = {"weight": 1.0, "temperature": 2.0}

    def __init__(self, student, teacher, options=None, warmup=0):
        super().__init__(student, teacher, options, warmup)
        check(teacher is not None, "hydra needs a teacher (its members' logits)")
        self.members = teacher.members
        self.heads = _heads(student.feature_dim, teacher.n_classes, self.members)

    @property
    def predictor(self) -> HydraStudent:
        return HydraStudent(self.student, self.heads)

    def distill_losses(self, out, batch, epoch):
        targets = member_targets(batch, self.members, "hydra")
        tau, w = self.options["temperature"], self.options["weight"]
        per_head = torch.stack([soft_kl(h(out.feature), targets[:, m], tau) for m, h in enumerate(self.heads)])
        return {"kd": w * soft_kl(out.logits, batch.teacher.logits, tau), "hydra": w * per_head.mean()}

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{PREFIX}heads.{k}": v.detach().cpu() for k, v in self.heads.state_dict().items()}
