"""One training loop for teachers and students, with validation-only selection and resume."""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from ..distill import Batch, Distiller, TeacherOutputs
from ..errors import EarlykdError
from ..models import eval_mode
from ..progress import progress
from .checkpoint import load_tensors, save_tensors


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor
    teacher: TeacherOutputs | None = None

    def __len__(self) -> int:
        return len(self.y)

    # The trainer's batch-source interface: any object with these four methods can be trained on
    # (earlykd.early.anytime.LevelSplit draws a prefix length per batch).
    def to(self, device) -> "Split":
        teacher = self.teacher.to(device) if self.teacher is not None else None
        return Split(self.x.to(device), self.y.to(device), teacher)

    def batches(self, rng: np.random.Generator, size: int):
        """Shuffled mini-batches for one epoch, as (Batch, cases)."""
        for idx in batch_slices(rng.permutation(len(self)), size):
            index = torch.from_numpy(idx).to(self.y.device)
            teacher = self.teacher[index] if self.teacher is not None else None
            yield Batch(self.x[index], self.y[index], teacher), len(idx)

    def score(self, model) -> tuple[float, float]:
        """(cross-entropy, accuracy) of the model in eval mode."""
        return self.score_logits(predict_logits(model, self.x))

    def score_logits(self, logits: torch.Tensor) -> tuple[float, float]:
        return F.cross_entropy(logits, self.y).item(), (logits.argmax(1) == self.y).float().mean().item()


@dataclass
class FitResult:
    best_epoch: int | None
    epochs_run: int
    seconds_per_epoch: float
    train_seconds: float
    peak_memory_mb: float
    history: list[dict] = field(default_factory=list)


def batch_slices(order: np.ndarray, size: int) -> list[np.ndarray]:
    """Mini-batches of `size`; a trailing batch of one joins the previous one (batch norm needs two)."""
    parts = [order[i:i + size] for i in range(0, len(order), size)]
    if len(parts) > 1 and len(parts[-1]) == 1:
        last = parts.pop()
        parts[-1] = np.concatenate([parts[-1], last])
    return parts


def _logits(out) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out


@torch.no_grad()
def predict_logits(model, x: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Logits in eval mode, in chunks; works for a Classifier and for a Distiller."""
    with eval_mode(model):
        return torch.cat([_logits(model(x[i:i + chunk])) for i in range(0, len(x), chunk)])


def _scheduler(opt, kind: str, epochs: int):
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, epochs // 3), gamma=0.1)
    return None


def _reset_peak_memory(device: torch.device) -> None:
    """Start a fresh peak for this fit: CUDA's allocator statistics, or Linux's VmHWM."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # elsewhere the process-lifetime peak is reported


def _peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated, or the process's peak resident set size (MiB) since the reset."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pack_tensors(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list]:
    """The tensors as one flat tensor per dtype, and their layout [(name, dtype, shape)]: a resumable state file
    then holds a few tensors instead of hundreds (writing each costs about as much as writing many numbers)."""
    parts: dict[str, list[torch.Tensor]] = {}
    layout = []
    for name, value in tensors.items():
        value = value if torch.is_tensor(value) else torch.tensor(value)
        dtype = str(value.dtype).removeprefix("torch.")
        parts.setdefault(dtype, []).append(value.detach().reshape(-1).cpu())
        layout.append([name, dtype, list(value.shape)])
    return {dtype: torch.cat(p) for dtype, p in parts.items()}, layout


def unpack_tensors(packed: dict[str, torch.Tensor], layout: list, path: Path) -> dict[str, torch.Tensor]:
    """pack_tensors undone; a layout that does not fit the tensors is a damaged file."""
    out, used = {}, {}
    try:
        for name, dtype, shape in layout:
            start, size = used.get(dtype, 0), int(np.prod(shape))
            out[name] = packed[dtype][start:start + size].reshape(shape).clone()
            used[dtype] = start + size
    except (KeyError, TypeError, ValueError, RuntimeError):
        used = None
    if used != {dtype: len(t) for dtype, t in packed.items()}:
        raise EarlykdError(f"{path}: its saved state is damaged (the tensors do not fit their layout); train it "
                           "afresh without --resume")
    return out


def _tuples_like(saved: dict, live: dict) -> dict:
    """A parameter group read back from JSON, with lists made tuples where the live optimiser keeps tuples (Adam's
    betas), so a resumed optimiser holds what an uninterrupted one does."""
    return {k: tuple(v) if isinstance(v, list) and isinstance(live.get(k), tuple) else v for k, v in saved.items()}


# what a state file's metadata holds (Trainer.save_state), by type
NULL = type(None)
STATE_FIELDS = {"model": dict, "method": str, "next_epoch": int, "best_epoch": (int, NULL), "best_score": (list, NULL),
                "stale": int, "history": list, "param_groups": list, "sched": (dict, NULL), "rng_numpy": dict,
                "layout": (list, NULL)}


def _state_problem(meta: dict) -> str | None:
    """What is wrong with a state file's metadata, or None."""
    for key, types in STATE_FIELDS.items():
        if key not in meta and key != "layout":   # files of earlier versions have no layout
            return f"no {key}"
        value = meta.get(key)
        if not isinstance(value, types) or isinstance(value, bool) or isinstance(value, int) and value < 0:
            return f"{key} is {value!r:.40}"
    if not all(isinstance(g, dict) for g in meta["param_groups"] + meta["history"]):
        return "param_groups or history is not a list of mappings"
    if meta["best_score"] is not None and not all(isinstance(v, (int, float)) for v in meta["best_score"]):
        return f"best_score is {meta['best_score']!r:.40}"
    return None


class Trainer:
    """Adam, per-epoch LR schedule, selection on validation only, early stopping, resume."""

    def __init__(self, distiller: Distiller, cfg: dict, device: torch.device, state_path: Path | None = None,
                 desc: str = ""):
        self.model, self.cfg, self.device = distiller.to(device), cfg, device
        self.state_path, self.desc = state_path, desc
        self.opt = torch.optim.Adam(self.model.optimizer_groups(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        self.sched = _scheduler(self.opt, cfg["schedule"], cfg["epochs"])
        self.rng = np.random.default_rng(cfg["seed"])
        self.epoch, self.best_epoch, self.best_score, self.stale = 0, None, None, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict] = []

    # -- selection -------------------------------------------------------------------------
    def _first_eligible(self) -> int:
        return max(self.model.warmup, self.cfg.get("min_epochs") or 0)

    def _score(self, val_loss: float, val_acc: float) -> tuple:
        return (-val_acc, val_loss) if self.cfg["select"] == "acc_loss" else (val_loss,)

    def _validate(self, val: Split) -> tuple[float, float]:
        """Inference is the student alone: only its modules switch to eval mode and back."""
        return val.score(self.model.student)

    # -- one epoch ---------------------------------------------------------------------------
    def _train_epoch(self, train: Split) -> dict[str, float]:
        totals: dict[str, torch.Tensor] = {}
        for batch, cases in train.batches(self.rng, self.cfg["batch_size"]):
            _, losses = self.model.forward_train(batch, self.epoch)
            loss = sum(losses.values())
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + value.detach() * cases
        if self.sched is not None:
            self.sched.step()
        return {name: (value / len(train)).item() for name, value in totals.items()}

    def fit(self, train: Split, val: Split) -> FitResult:
        train, val = train.to(self.device), val.to(self.device)
        epochs, every = self.cfg["epochs"], self.cfg.get("checkpoint_every") or 0
        _reset_peak_memory(self.device)
        start = time.perf_counter()
        first = self.epoch
        bar = progress(range(first, epochs), initial=first, total=epochs, desc=self.desc, leave=False,
                       enabled=self.cfg.get("progress", True), unit="epoch")
        self.model.train()   # validation switches the student alone, and back
        for self.epoch in bar:
            losses = self._train_epoch(train)
            row = {"epoch": self.epoch, **losses, **self.model.diagnostics()}
            if len(val):
                row["val_loss"], row["val_acc"] = self._validate(val)
            self._select(row, sum(losses.values()))
            self.history.append(row)
            bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k in ("ce", "val_loss", "val_acc")})
            stop = self.cfg.get("patience") is not None and self.stale > self.cfg["patience"]
            if self.state_path is not None and every and ((self.epoch + 1) % every == 0 or stop):
                self.save_state(self.epoch + 1)
            if stop:
                break
        bar.close()
        seconds = time.perf_counter() - start
        run_now = len(self.history) - first
        if self.best_state is not None:
            self.model.restore_selection(self.best_state)
        return FitResult(self.best_epoch, len(self.history), seconds / max(1, run_now), seconds,
                         _peak_memory_mb(self.device), self.history)

    def _select(self, row: dict, train_loss: float) -> None:
        """Best validation score; without a validation split the latest epoch, or for a refit after
        cross-validation (select cv) the lowest training loss, which is the latest epoch unless
        training diverged late (as LSTMs can at lr 1e-3)."""
        if self.epoch < self._first_eligible() and self.epoch < self.cfg["epochs"] - 1:
            return
        if "val_loss" in row:
            score = self._score(row["val_loss"], row["val_acc"])
        else:
            score = (train_loss,) if self.cfg["select"] == "cv" else (-self.epoch,)
        if self.best_score is None or score < self.best_score:
            self.best_score, self.best_epoch, self.stale = score, self.epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.selection_state().items()}
        else:
            self.stale += 1

    # -- resume --------------------------------------------------------------------------------
    def save_state(self, next_epoch: int) -> None:
        tensors = {f"live.{k}": v for k, v in self.model.state_dict().items()}
        if self.best_state is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_state.items()})
        opt = self.opt.state_dict()
        for pid, state in opt["state"].items():
            for key, value in state.items():
                tensors[f"optim.{pid}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {"model": self.model.student.spec(), "method": self.model.name, "next_epoch": next_epoch, "best_epoch": self.best_epoch, "best_score": self.best_score,
                "stale": self.stale, "history": self.history, "param_groups": opt["param_groups"],
                "sched": self.sched.state_dict() if self.sched else None,
                "rng_numpy": self.rng.bit_generator.state}
        packed, meta["layout"] = pack_tensors(tensors)
        save_tensors(self.state_path, packed, meta)

    def load_state(self, path: Path) -> None:
        tensors, meta = load_tensors(path)
        problem = _state_problem(meta)
        if problem:
            raise EarlykdError(f"{path}: its saved state is damaged ({problem}); train it afresh without --resume")
        if meta.get("layout") is not None:   # files of earlier versions hold one tensor per name
            tensors = unpack_tensors(tensors, meta["layout"], path)
        saved, wanted = meta.get("model", {}), self.model.student.spec()
        if saved != wanted or meta.get("method") != self.model.name:
            raise EarlykdError(f"{path}: holds a '{saved.get('arch')}' {meta.get('method')} run "
                               f"({saved}), the config asks for '{wanted['arch']}' {self.model.name} ({wanted})")
        pick = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
        try:
            self.model.load_state_dict(pick("live."))
            torch.set_rng_state(tensors["rng.torch"])
            self.rng.bit_generator.state = meta["rng_numpy"]
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            problem = f"no tensor {exc}" if isinstance(exc, KeyError) else " ".join(str(exc).split())[:80]
            raise EarlykdError(f"{path}: its saved state is damaged ({problem}); train it afresh without --resume") \
                from None
        best = pick("best.")
        self.best_state = best or None
        state: dict = {}
        for key, value in pick("optim.").items():
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = value.to(self.device) if name != "step" else value
        groups = [_tuples_like(saved, live) for saved, live in zip(meta["param_groups"], self.opt.param_groups)]
        groups += meta["param_groups"][len(groups):]   # a count that differs is refused below
        try:
            self.opt.load_state_dict({"state": state, "param_groups": groups})
        except (ValueError, KeyError, TypeError) as exc:   # saved by code that grouped the parameters otherwise
            raise EarlykdError(f"{path}: its optimiser state does not fit this {self.model.name} run ({exc}); "
                               "train it afresh without --resume") from None
        if self.sched and meta["sched"]:
            self.sched.load_state_dict(meta["sched"])
        self.epoch = meta["next_epoch"]
        self.best_epoch, self.stale, self.history = meta["best_epoch"], meta["stale"], meta["history"]
        self.best_score = tuple(meta["best_score"]) if meta["best_score"] is not None else None
