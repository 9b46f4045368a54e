"""One anytime student: trained on prefixes of many lengths, one earliness level drawn per mini-batch.

Every input is a student view from `Prepared.view` (the prefix contract), precomputed once per
level. Each batch pairs the prefixes of one level with the cached full-series teacher outputs,
so any registered distillation method gives its loss. Selection uses the validation loss
averaged over the levels. With `level_norm` (the default) every batch norm keeps its statistics per
level (models.levelnorm): a batch updates its level's row, evaluation at a level reads that row, and
the rows are recomputed from the training views once the weights are chosen.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Prepared
from ..distill import Batch, TeacherOutputs, build_method, method_class
from ..errors import check
from ..models import at_level, build_model, eval_mode, fit_level_stats, set_level, use_level_norm
from ..models.levelnorm import batch_statistics
from ..prefix import observed_samples, prefix_steps, ready_checkpoints
from ..train import FitResult, Trainer, batch_slices, predict_logits

DEFAULT_LEVELS = tuple(round(0.05 * i, 2) for i in range(1, 21))


def parse_levels(text: str | list | tuple | None) -> list[float]:
    """Sorted distinct earliness levels in (0, 1]; 1.0 is always included (the last checkpoint)."""
    if text is None:
        return list(DEFAULT_LEVELS)
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        levels = sorted({round(float(v), 6) for v in items if str(v).strip()})
    except ValueError:
        check(False, f"earliness levels must be numbers separated by commas, got {text!r}")
    check(len(levels) > 0, "no earliness levels given")
    check(all(0 < e <= 1 for e in levels), f"earliness levels must lie in (0, 1], got {levels}")
    return levels if levels[-1] == 1.0 else levels + [1.0]


def checkpoints(levels: list[float], reference_length: int, length: int) -> list[float]:
    """The levels a stream passes, one per distinct count of observed samples (the largest level for each)."""
    for e in levels:
        prefix_steps(e, length)  # one model step at least
    by_samples = {observed_samples(e, reference_length): e for e in sorted(levels)}
    return [by_samples[k] for k in sorted(by_samples)]


def student_train_cfg(train: dict, two_stage: bool) -> dict:
    """Students' selection defaults: validation loss, from the first epoch (after a two-stage warm-up)."""
    t = dict(train)
    t["select"] = t["select"] or "loss"
    t["min_epochs"] = t["min_epochs"] or 0
    t["warmup"] = (t["epochs"] // 2 if two_stage else 0) if t["warmup"] is None else t["warmup"]
    return t


class LevelSplit:
    """A split's views at every level, its labels and teacher outputs: a batch source for the Trainer."""

    def __init__(self, views: list[torch.Tensor], y: torch.Tensor, teacher: TeacherOutputs | None = None,
                 ready: np.ndarray | None = None):
        self.views, self.y, self.teacher = views, y, teacher
        self.ready = ready     # per case, the first level at which it holds a value (prefix.ready_checkpoints)
        self.on_level = None   # called with a batch's level before it is yielded (the student's norm row)

    @classmethod
    def of(cls, data: Prepared, split: str, levels: list[float], mode: str, channels: list[int] | None,
           teacher: TeacherOutputs | None = None) -> "LevelSplit":
        samples = [observed_samples(e, data.reference_length) for e in levels]
        return cls([data.view(split, e, mode, channels) for e in levels], data.labels[split], teacher,
                   ready_checkpoints(data.series[split], samples, channels))

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray) -> "LevelSplit":
        """The cases at `index` (an integer array), at every level."""
        idx = torch.as_tensor(index, dtype=torch.long)
        teacher = self.teacher[idx] if self.teacher is not None else None
        ready = self.ready[np.asarray(index, dtype=np.int64)] if self.ready is not None else None
        return LevelSplit([v[idx] for v in self.views], self.y[idx], teacher, ready)

    def to(self, device) -> "LevelSplit":
        teacher = self.teacher.to(device) if self.teacher is not None else None
        moved = LevelSplit([v.to(device) for v in self.views], self.y.to(device), teacher, self.ready)
        moved.on_level = self.on_level
        return moved

    def batches(self, rng: np.random.Generator, size: int):
        """Shuffled mini-batches; each draws one level (seeded by the trainer's generator)."""
        slices = batch_slices(rng.permutation(len(self)), size)
        drawn = rng.integers(len(self.views), size=len(slices))
        for idx, level in zip(slices, drawn):
            index = torch.from_numpy(idx).to(self.y.device)
            teacher = self.teacher[index] if self.teacher is not None else None
            if self.on_level is not None:
                self.on_level(int(level))
            yield Batch(self.views[level][index], self.y[index], teacher), len(idx)

    def score(self, model) -> tuple[float, float]:
        """Cross-entropy and accuracy averaged over the levels: the trainer's selection score. A student with
        norms per level is scored with each level's batch statistics (see models.levelnorm)."""
        losses, accs = [], []
        with batch_statistics(model):
            for k in range(len(self.views)):
                logits = self._at(model, k, predict_logits)
                losses.append(F.cross_entropy(logits, self.y).item())
                accs.append((logits.argmax(1) == self.y).float().mean().item())
        return float(np.mean(losses)), float(np.mean(accs))

    def _at(self, model, level: int, predict):
        """predict(model, the view at `level`) with the model's batch norms at that level (models.levelnorm)."""
        with at_level(model, level):
            return predict(model, self.views[level])

    def logits(self, model) -> np.ndarray:
        """(levels, cases, classes) logits of the model in eval mode."""
        return np.stack([self._at(model, k, predict_logits).cpu().numpy() for k in range(len(self.views))])

    def outputs(self, model) -> tuple[np.ndarray, np.ndarray]:
        """(levels, cases, classes) logits and (levels, cases, feature_dim) features, in eval mode."""
        pairs = [self._at(model, k, predict_outputs) for k in range(len(self.views))]
        return tuple(np.stack([p[i].cpu().numpy() for p in pairs]) for i in (0, 1))


@torch.no_grad()
def predict_outputs(model, x: torch.Tensor, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, feature) of a Classifier in eval mode, in chunks (the logits equal `predict_logits`)."""
    with eval_mode(model):
        parts = [model(x[i:i + chunk]) for i in range(0, len(x), chunk)]
    return torch.cat([p.logits for p in parts]), torch.cat([p.feature for p in parts])


def train_anytime(data: Prepared, outputs: dict[str, TeacherOutputs] | None, method: str, options: dict,
                  model_cfg: dict, train_cfg: dict, levels: list[float], mode: str, channels: list[int] | None,
                  device: torch.device, state_path=None, resume: bool = False, desc: str = "",
                  aria: dict | None = None, level_norm: bool = True):
    """-> (distiller with the selected student, FitResult, validation LevelSplit[, AriaSampler]).

    `aria` (None: one uniformly drawn level per batch, every series once per epoch) switches to
    region-adaptive draws: {"config": early.aria options, "guide": the teacher's full-series outputs per
    split (train fits the regions; val, when given, measures the true per-region discrepancy in traces),
    "ambiguity": optional (levels, train cases) teacher discrepancy for normalisation}."""
    torch.manual_seed(train_cfg["seed"])
    train = LevelSplit.of(data, "train", levels, mode, channels, outputs["train"] if outputs else None)
    val = LevelSplit.of(data, "val", levels, mode, channels)
    distiller = new_distiller(train, data.n_classes, method, options, model_cfg, train_cfg, level_norm)
    source = train
    if aria is not None:
        source = _aria_sampler(aria, data, train, val, levels, distiller, train_cfg, state_path)
    trainer = Trainer(distiller, train_cfg, device, state_path, desc=desc)
    if resume and state_path is not None and state_path.exists():
        trainer.load_state(state_path)
        if aria is not None:
            source.resume(trainer.epoch)
    fit: FitResult = trainer.fit(source, val)
    fit_level_stats(distiller.student, [v.to(device) for v in train.views])
    return (distiller, fit, val) if aria is None else (distiller, fit, val, source)


def new_distiller(train: LevelSplit, n_classes: int, method: str, options: dict, model_cfg: dict, train_cfg: dict,
                  level_norm: bool = True):
    """A fresh student inside the method's distiller; with `level_norm` its batch norms keep a row per level,
    and `train` switches the row for each batch it yields."""
    student = build_model(model_cfg["arch"], train.views[0].shape[1], n_classes, model_cfg["layers"],
                          model_cfg["hidden"])
    if level_norm:
        use_level_norm(student, len(train.views))
        train.on_level = lambda k: set_level(student, k)
    dims = train.teacher.dims if train.teacher is not None else None
    return build_method(method, student, dims, anytime_options(method, options), train_cfg["warmup"])


def anytime_options(method: str, options: dict | None) -> dict:
    """A method's resolved options for an anytime student, which has no teacher head to give it."""
    resolved = method_class(method).resolve_options(options or {})
    check(not method_class(method).wants_teacher_head(resolved),
          f"method option teacher_head = 1 is not supported for the anytime student ({method})")
    return resolved


def _aria_sampler(aria: dict, data: Prepared, train: LevelSplit, val: LevelSplit, levels: list[float], distiller,
                  train_cfg: dict, state_path):
    from .aria import AriaConfig, AriaSampler, Regions
    cfg, guide = AriaConfig.of(aria.get("config")), aria["guide"]
    regions = Regions(cfg, levels, guide["train"].feature, data.labels["train"], train_cfg["seed"])
    held_out = None
    if guide.get("val") is not None and len(val):
        group = regions.assign(guide["val"].feature, data.labels["val"])
        held_out = {"views": val.views, "teacher": guide["val"].logits, "regions": regions.of(group),
                    "model": distiller.student}
    every = train_cfg.get("checkpoint_every") or 0
    snapshot = state_path.with_name("aria_state.json") if state_path is not None and every else None
    sampler = AriaSampler(train, regions, cfg, guide["train"].logits, train_cfg["epochs"], aria.get("ambiguity"),
                          held_out, snapshot, every, trace_every=max(1, train_cfg["epochs"] // 10))
    sampler.attach(distiller)
    return sampler
