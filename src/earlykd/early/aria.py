"""ARIA-style adaptive allocation of the anytime student's training over (series, earliness).

Regions are earliness bins crossed with groups of training series (k-means clusters of the frozen
teacher's full-series features, or classes), fitted once on the training split. A tracker keeps,
per region, an exponential moving average of the per-sample discrepancy KL(teacher on the full
series || student on the prefix), taken from the student's own training forward pass. A batch
draws one level and then its series so that each (series, level) pair has probability p_r / |r|,
with p = (1 - eps) softmax(d / (T mean d)) + eps / K, uniform over regions during a warm-up.
Every draw uses the trainer's generator. Design: ../shared/spec/aria.md; docs/early.md.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DEFAULTS
from ..distill import Batch
from ..errors import check
from ..models import at_level
from ..train import batch_slices, predict_logits

GROUPS = ("auto", "features", "classes", "none")


@dataclass(frozen=True)
class AriaConfig:
    bins: int
    groups: str          # auto: k-means on teacher features, classes when fewer than 5 series per cluster
    clusters: int
    eps: float
    beta: float
    temperature: float
    warmup_share: float  # share of the epochs sampled uniformly over regions
    weights: bool        # importance weights u_r / p_r, clipped at `clip`
    clip: float
    normalise: bool      # divide d_r by the teacher's own prefix-vs-full discrepancy in r

    @classmethod
    def of(cls, options: dict | None) -> "AriaConfig":
        known = DEFAULTS["early"]["aria"]
        unknown = set(options or {}) - set(known)
        check(not unknown, f"unknown early.aria option(s) {sorted(unknown)} (known: {', '.join(known)})")
        c = cls(**{**known, **(options or {})})
        num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
        whole = lambda v: isinstance(v, int) and not isinstance(v, bool)
        check(whole(c.bins) and c.bins >= 1, f"early.aria.bins must be a positive integer, got {c.bins!r}")
        check(whole(c.clusters) and c.clusters >= 1,
              f"early.aria.clusters must be a positive integer, got {c.clusters!r}")
        check(c.groups in GROUPS, f"early.aria.groups must be one of {', '.join(GROUPS)}, got {c.groups!r}")
        check(num(c.eps) and 0 <= c.eps <= 1, f"early.aria.eps must be in [0, 1], got {c.eps!r}")
        check(num(c.beta) and 0 < c.beta <= 1, f"early.aria.beta must be in (0, 1], got {c.beta!r}")
        check(num(c.temperature) and c.temperature > 0, f"early.aria.temperature must be > 0, got {c.temperature!r}")
        check(num(c.warmup_share) and 0 <= c.warmup_share <= 1,
              f"early.aria.warmup_share must be in [0, 1], got {c.warmup_share!r}")
        check(num(c.clip) and c.clip >= 1, f"early.aria.clip must be >= 1, got {c.clip!r}")
        check(isinstance(c.weights, bool) and isinstance(c.normalise, bool),
              "early.aria.weights and early.aria.normalise must be true or false")
        return c


def probabilities(d: np.ndarray, eps: float, temperature: float) -> np.ndarray:
    """(1 - eps) softmax(d / (T mean d)) + eps / K; uniform when d is constant, zero or not yet known."""
    k = len(d)
    scale = temperature * float(np.mean(d)) if k else 0.0
    if not math.isfinite(scale) or scale <= 0:
        soft = np.full(k, 1.0 / k)
    else:
        z = np.exp(d / scale - np.max(d / scale))
        soft = z / z.sum()
    return (1 - eps) * soft + eps / k


class Tracker:
    """Per-region EMA of observed discrepancies; a region starts at its first observation."""

    def __init__(self, k: int, beta: float):
        self.d, self.beta = np.full(k, np.nan), beta

    def update(self, regions: np.ndarray, values: np.ndarray) -> None:
        for r in np.unique(regions):
            mean = float(values[regions == r].mean())
            self.d[r] = mean if np.isnan(self.d[r]) else (1 - self.beta) * self.d[r] + self.beta * mean

    def estimates(self) -> np.ndarray:
        """d with unseen regions at the mean of the seen ones (all equal before any observation)."""
        seen = ~np.isnan(self.d)
        return np.where(seen, self.d, self.d[seen].mean() if seen.any() else 1.0)


def earliness_bins(levels: list[float], bins: int) -> np.ndarray:
    """Bin of each level: (0, 1/bins] -> 0, ..., ((bins-1)/bins, 1] -> bins - 1."""
    return np.array([min(bins - 1, max(0, math.ceil(round(e * bins, 9)) - 1)) for e in levels])


class Regions:
    """Groups of training series (fitted on the training split only) crossed with earliness bins."""

    def __init__(self, cfg: AriaConfig, levels: list[float], features: torch.Tensor, y: torch.Tensor, seed: int):
        n = len(y)
        self.kind = cfg.groups
        if self.kind == "auto":
            self.kind = "features" if n >= 5 * cfg.clusters else "classes"
        self.bins = earliness_bins(levels, cfg.bins)
        if self.kind == "features":
            from sklearn.cluster import KMeans
            f = features.detach().cpu().double().numpy()
            self.mean, self.std = f.mean(0), f.std(0) + 1e-8
            self.kmeans = KMeans(min(cfg.clusters, n), n_init=10, random_state=seed).fit((f - self.mean) / self.std)
            self.n_groups = self.kmeans.n_clusters
        else:
            self.n_groups = int(y.max()) + 1 if self.kind == "classes" else 1
        self.group = self.assign(features, y)
        raw = self.bins[:, None] * self.n_groups + self.group[None, :]      # (levels, n) before compaction
        self.used = np.unique(raw)                                           # non-empty regions only
        self.index = np.searchsorted(self.used, raw)
        self.sizes = np.bincount(self.index.ravel(), minlength=len(self.used))

    def __len__(self) -> int:
        return len(self.used)

    def assign(self, features: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """Group of each series of any split, with what was fitted on the training split."""
        if self.kind == "features":
            f = features.detach().cpu().double().numpy()
            return self.kmeans.predict((f - self.mean) / self.std).astype(int)
        return y.cpu().numpy().astype(int) if self.kind == "classes" else np.zeros(len(y), int)

    def of(self, group: np.ndarray) -> np.ndarray:
        """(levels, n) region index of held-out series; -1 where that region has no training pair."""
        raw = self.bins[:, None] * self.n_groups + group[None, :]
        pos = np.clip(np.searchsorted(self.used, raw), 0, len(self.used) - 1)
        return np.where(self.used[pos] == raw, pos, -1)

    def describe(self) -> dict:
        return {"kind": self.kind, "n_groups": int(self.n_groups), "bins": self.bins.tolist(),
                "train_groups": self.group.tolist(), "regions": [[int(r // self.n_groups), int(r % self.n_groups)]
                                                                for r in self.used], "sizes": self.sizes.tolist()}


def kl_per_sample(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    t = F.log_softmax(teacher_logits.float(), 1)
    return (t.exp() * (t - F.log_softmax(student_logits.float(), 1))).sum(1)


class AriaSampler:
    """Batch source (to, batches, score, len) over a LevelSplit's views with region-adaptive draws."""

    def __init__(self, split, regions: Regions, cfg: AriaConfig, guide: torch.Tensor, epochs: int,
                 ambiguity: np.ndarray | None = None, held_out: dict | None = None, snapshot: Path | None = None,
                 every: int = 0, trace_every: int = 0):
        self.split, self.regions, self.cfg, self.guide, self.epochs = split, regions, cfg, guide, epochs
        self.tracker = Tracker(len(regions), cfg.beta)
        self.share = regions.sizes / regions.sizes.sum()      # u_r: each region's share under uniform pairs
        self.norm = None
        if ambiguity is not None:  # mean teacher discrepancy per region, smoothed by its overall mean
            a = np.bincount(regions.index.ravel(), ambiguity.ravel(), len(regions)) / regions.sizes
            self.norm = a + a.mean()
        self.held_out, self.snapshot, self.every, self.trace_every = held_out, snapshot, every, trace_every
        self.epoch, self.trace, self._seen, self._weight = 0, [], None, 1.0
        self.warmup = int(round(cfg.warmup_share * epochs))

    def __len__(self) -> int:
        return len(self.split)

    def to(self, device) -> "AriaSampler":
        """Moves its tensors in place (the trainer's copy and this one stay the same sampler)."""
        self.split, self.guide = self.split.to(device), self.guide.to(device)
        if self.held_out is not None:
            h = self.held_out
            self.held_out = {**h, "views": [v.to(device) for v in h["views"]], "teacher": h["teacher"].to(device)}
        return self

    def score(self, model):
        return self.split.score(model)

    # -- allocation -----------------------------------------------------------------------------
    def probabilities(self) -> np.ndarray:
        k = len(self.regions)
        if self.epoch < self.warmup:
            return np.full(k, 1.0 / k)
        d = self.tracker.estimates()
        return probabilities(d / self.norm if self.norm is not None else d, self.cfg.eps, self.cfg.temperature)

    def attach(self, distiller) -> None:
        """See each training forward pass's logits (for the tracker) and apply importance weights."""
        original = distiller.forward_train

        def forward_train(batch: Batch, epoch: int):
            logits, losses = original(batch, epoch)
            self._seen = logits.detach()
            if self.cfg.weights:
                losses = {name: value * self._weight for name, value in losses.items()}
            return logits, losses
        distiller.forward_train = forward_train

    def batches(self, rng: np.random.Generator, size: int):
        """One level per batch (inputs of a batch share a length); pair (i, level) drawn with p_r / |r|."""
        if self.trace_every and self.epoch % self.trace_every == 0 and self.epoch > 0:
            self.record_trace(None)
        y, index = self.split.y, self.regions.index
        for part in batch_slices(np.arange(len(self)), size):
            p = self.probabilities()
            pair = p[index] / self.regions.sizes[index]
            per_level = pair.sum(1)
            level = int(rng.choice(len(per_level), p=per_level / per_level.sum()))
            idx = rng.choice(len(self), size=len(part), p=pair[level] / pair[level].sum())
            regions = index[level, idx]
            self._weight = float(np.minimum(self.share[regions] / p[regions], self.cfg.clip).mean())
            rows = torch.from_numpy(idx).to(y.device)
            teacher = self.split.teacher[rows] if self.split.teacher is not None else None
            self._seen = None
            if self.split.on_level is not None:
                self.split.on_level(level)
            yield Batch(self.split.views[level][rows], y[rows], teacher), len(idx)
            if self._seen is not None:
                kl = kl_per_sample(self.guide[rows], self._seen).cpu().numpy()
                self.tracker.update(regions, kl)
        self.epoch += 1
        if self.snapshot is not None and self.every and self.epoch % self.every == 0:
            self.save()

    # -- traces and resume ------------------------------------------------------------------------
    def record_trace(self, model) -> None:
        """EMA, sampling probabilities and (with held-out data) the true per-region discrepancy now."""
        row = {"epoch": self.epoch, "ema": [None if np.isnan(v) else round(float(v), 6) for v in self.tracker.d],
               "p": [round(float(v), 6) for v in self.probabilities()]}
        if self.held_out is not None and (model or self.held_out.get("model")) is not None:
            h = self.held_out
            model = model or h["model"]
            kl = []
            for k, x in enumerate(h["views"]):
                with at_level(model, k):
                    kl.append(kl_per_sample(h["teacher"], predict_logits(model, x)).cpu().numpy())
            kl = np.stack(kl)
            r = h["regions"]
            sums = np.bincount(r[r >= 0], kl[r >= 0], len(self.regions))
            counts = np.bincount(r[r >= 0], minlength=len(self.regions))
            row["held_out"] = [round(float(s / c), 6) if c else None for s, c in zip(sums, counts)]
        self.trace.append(row)

    def state(self) -> dict:
        return {"epoch": self.epoch, "d": [None if np.isnan(v) else float(v) for v in self.tracker.d],
                "trace": self.trace, "config": asdict(self.cfg)}

    def save(self) -> None:
        """Keep the last two epoch snapshots, so the trainer's latest state always has one."""
        stored = json.loads(self.snapshot.read_text()) if self.snapshot.is_file() else {}
        stored = {k: v for k, v in stored.items() if int(k) >= self.epoch - self.every}
        stored[str(self.epoch)] = self.state()
        self.snapshot.write_text(json.dumps(stored))

    def resume(self, epoch: int) -> None:
        stored = json.loads(self.snapshot.read_text()) if self.snapshot and self.snapshot.is_file() else {}
        check(str(epoch) in stored, f"{self.snapshot}: no sampler state for epoch {epoch}; start the run again")
        s = stored[str(epoch)]
        self.epoch, self.trace = s["epoch"], s["trace"]
        self.tracker.d = np.array([np.nan if v is None else v for v in s["d"]])
