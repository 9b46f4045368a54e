"""The distiller interface: a student, optional adapters, and named loss terms per batch."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import EarlykdError, did_you_mean, lookup, register_in
from ..models import Classifier


@dataclass
class TeacherOutputs:
    """Frozen teacher outputs on the full series (cached once per teacher, dataset and split)."""
    logits: torch.Tensor   # (N, classes)
    feature: torch.Tensor  # (N, feature_dim)
    hidden: torch.Tensor   # (N, steps, hidden_dim)
    member_logits: torch.Tensor | None = None  # (N, members, classes): each ensemble member's own logits
    member_oof: torch.Tensor | None = None     # (N, members, classes): each member's CV fold that held the case out

    def __getitem__(self, index) -> "TeacherOutputs":
        members, oof = (None if t is None else t[index] for t in (self.member_logits, self.member_oof))
        return TeacherOutputs(self.logits[index], self.feature[index], self.hidden[index], members, oof)

    def to(self, device) -> "TeacherOutputs":
        members, oof = (None if t is None else t.to(device) for t in (self.member_logits, self.member_oof))
        return TeacherOutputs(self.logits.to(device), self.feature.to(device), self.hidden.to(device), members, oof)

    @property
    def members(self) -> torch.Tensor:
        """(N, M, classes): the members' logits, or the logits as one member (M = 1) when none are given."""
        return self.logits.unsqueeze(1) if self.member_logits is None else self.member_logits

    @property
    def dims(self) -> "TeacherDims":
        return TeacherDims(self.logits.shape[1], self.feature.shape[1], self.hidden.shape[2], self.hidden.shape[1],
                           self.members.shape[1])


@dataclass(frozen=True)
class TeacherDims:
    n_classes: int
    feature_dim: int
    hidden_dim: int
    steps: int
    members: int = 1


@dataclass
class Batch:
    x: torch.Tensor                      # student input (prefix): (B, channels, steps)
    y: torch.Tensor                      # (B,)
    teacher: TeacherOutputs | None = None


def align_steps(seq: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T, H) -> (B, steps, H) by linear interpolation over time."""
    if seq.shape[1] == steps:
        return seq
    return F.interpolate(seq.transpose(1, 2), size=steps, mode="linear", align_corners=True).transpose(1, 2)


def pair_steps(student: torch.Tensor, teacher: torch.Tensor, warp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair two hidden sequences (B, T, H) step by step in time.

    A student with fewer steps than the teacher saw a truncated prefix: its m steps sit on the teacher's
    first m time positions, so it is paired with the teacher's first m steps. Otherwise (stretch mode,
    equal lengths) the student is interpolated onto the teacher's steps, a no-op when they are equal.
    warp=True always interpolates the student onto all the teacher's steps (a time-warped target)."""
    m, steps = student.shape[1], teacher.shape[1]
    if m < steps and not warp:
        return student, teacher[:, :m]
    return align_steps(student, steps), teacher


class Distiller(nn.Module):
    """Base class. Subclasses set `name`, `description`, `defaults` and override `distill_losses`.

    `forward_train` returns the student logits and a dict of named, already weighted loss
    terms; the trainer minimises their sum. The student alone is used for inference.
    """
    name: ClassVar[str]
    description: ClassVar[str]
    defaults: ClassVar[dict] = {}
    needs_teacher: ClassVar[bool] = True
    two_stage: ClassVar[bool] = False   # checkpoint selection starts after the warm-up
    positive: ClassVar[tuple[str, ...]] = ()   # options that must be finite and above 0 (a temperature, a smoothing)
    fused_auxiliary: ClassVar[bool] = False    # Adam updates the method's own modules with torch's fused kernel

    @classmethod
    def wants_teacher_head(cls, options: dict) -> bool:
        """Whether these resolved options need the teacher's head (given with attach_teacher_head(weight, bias));
        known before the method is built, so a caller that has no head can refuse before any work."""
        return False

    @property
    def needs_teacher_head(self) -> bool:
        return self.wants_teacher_head(self.options)

    def __init__(self, student: Classifier, teacher: TeacherDims | None, options: dict | None = None,
                 warmup: int = 0):
        super().__init__()
        self.student = student
        self.teacher_dims = teacher
        self.options = self.resolve_options(options or {})
        self.warmup = warmup if self.two_stage else 0

    @classmethod
    def resolve_options(cls, options: dict) -> dict:
        out = dict(cls.defaults)
        for key, value in options.items():
            if key not in cls.defaults:
                raise EarlykdError(f"unknown option '{key}' for method '{cls.name}' ({did_you_mean(key, cls.defaults)})")
            default = cls.defaults[key]
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise EarlykdError(f"option '{key}' of method '{cls.name}' must be a number, got {value!r}")
                if not math.isfinite(value) or (key == "weight" or key.endswith("_weight")) and value < 0:
                    raise EarlykdError(f"option '{key}' of method '{cls.name}' must be a finite number"
                                       + (" >= 0 (a loss weight)" if "weight" in key else "") + f", got {value!r}")
            out[key] = value
        for key in cls.positive:
            if not 0 < out[key] < math.inf:
                raise EarlykdError(f"{cls.name} option '{key}' must be > 0, got {out[key]!r}")
        return out

    def optimizer_groups(self) -> list[dict]:
        """Adam's parameter groups: one by default. With `fused_auxiliary`, the student's tensors keep the
        trainer's plain Adam and the method's own modules (a prior, adapters) get torch's fused Adam, one
        kernel per tensor instead of about ten: the same update up to float rounding."""
        params = list(self.parameters())
        own = {id(p) for p in self.student.parameters()}
        extra = [p for p in params if id(p) not in own]
        if not self.fused_auxiliary or not extra or any(p.device.type not in ("cpu", "cuda") for p in extra):
            return [{"params": params}]
        return [{"params": [p for p in params if id(p) in own]}, {"params": extra, "fused": True}]

    def forward_train(self, batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.student(batch.x)
        ce, w = F.cross_entropy(out.logits, batch.y), self.options.get("ce_weight", 1)
        losses = {"ce": ce if w == 1 else w * ce}   # a method may weight CE with a ce_weight option
        losses.update(self.distill_losses(out, batch, epoch))
        return out.logits, losses

    def distill_losses(self, out, batch: Batch, epoch: int) -> dict[str, torch.Tensor]:
        return {}

    def trains_ce(self, epoch: int) -> bool:
        """Whether the losses of `epoch` include the student's cross-entropy ('ce'); a method whose warm-up
        trains without it (FitNets) says so here."""
        return True

    def diagnostics(self) -> dict[str, float]:
        """Per-epoch values worth logging that are not losses (joined to the history row, then reset)."""
        return {}

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors saved beside the student in its checkpoint (named '<method>.*'); none by default."""
        return {}

    def selection_state(self) -> dict[str, torch.Tensor]:
        """What the trainer keeps of the best epoch and restores after training: the whole state by default.
        A method whose own modules serve training only (and not `checkpoint_tensors`) may keep the student's."""
        return self.state_dict()

    def restore_selection(self, state: dict[str, torch.Tensor]) -> None:
        """Load a state kept by `selection_state` (or a whole one, as an averaging trainer keeps): every tensor
        `selection_state` names must be in it, and nothing else."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        lacking = set(missing) & set(self.selection_state())
        if unexpected or lacking:
            raise EarlykdError(f"{self.name}: a selected state that does not fit this run "
                               f"({(unexpected or sorted(lacking))[0]})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: the student alone."""
        return self.student(x).logits


NO_OOF = ("option oof = 1 needs the teacher members' out-of-fold logits, which this teacher lacks (teachers trained "
          "with select cv keep them; benchmarks/teacher_oof.py adds them to older ones)")


def member_targets(batch: Batch, expected: int, method: str, out_of_fold: bool = False) -> torch.Tensor:
    """The teacher members' logits (B, M, classes), detached; with `out_of_fold` each member's logits from its CV
    fold that held the case out. One clear line if M differs from `expected` or those logits are missing."""
    if out_of_fold:
        if batch.teacher.member_oof is None:
            raise EarlykdError(f"{method}: {NO_OOF}")
        targets = batch.teacher.member_oof.detach()
    else:
        targets = batch.teacher.members.detach()
    if targets.shape[1] != expected:
        raise EarlykdError(f"{method}: the teacher gives {targets.shape[1]} member(s), the method was built for "
                           f"{expected}")
    return targets


METHODS: dict[str, type[Distiller]] = {}


def register(cls: type[Distiller]) -> type[Distiller]:
    return register_in(METHODS, cls.name, cls, "method")


def method_class(name: str) -> type[Distiller]:
    return lookup(METHODS, name, "method")


def build_method(name: str, student: Classifier, teacher: TeacherDims | None, options: dict | None = None,
                 warmup: int = 0) -> Distiller:
    return method_class(name)(student, teacher, options, warmup)
