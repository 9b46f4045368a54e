"""Teachers as objects: one trained run, or an ensemble of runs stored as one teacher.

A teacher gives its full-series outputs for every split (computed once and cached in its run
directory), an id and an architecture. An ensemble's logits are the log of its members' mean
probabilities, so logit methods (KD and its kin) distil the mean probabilities; feature methods
use the feature and hidden sequence of its lead member, the member with the best selection score
(cross-validated accuracy, then loss). See docs/protocol.md, "Selection".
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
import yaml
from torch import nn

from .config import config_hash
from .data import Prepared
from .distill import TeacherOutputs, build_method
from .errors import check
from .fitting import evaluate_split, fit_and_save
from .models import ModelOutput, build_model
from .rundir import (METRICS_FILE, MODEL_FILE, RUN_FILE, Run, default_out, file_digest, load_prepared, open_run_dir,
                     read_run, resolve_device, versions)
from .train import Split, load_model
from .train.checkpoint import load_tensors, save_tensors, write_json, write_text
from .train.cv import cross_validate_epochs

SPLITS = ("train", "val", "test")
CV_FILE = "cv.json"
OOF_FILE = "oof_logits.safetensors"   # per case of train + val: logits of the CV fold that held it out


class EnsembleModel(nn.Module):
    """Members' mean probabilities as logits (log of the mean); feature and hidden of the lead (first)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return self.forward_members(x)[0]

    def forward_members(self, x: torch.Tensor) -> tuple[ModelOutput, torch.Tensor]:
        """The combined output and each member's logits, (batch, members, classes)."""
        outs = [m(x) for m in self.members]
        log_probs = torch.stack([torch.log_softmax(o.logits, 1) for o in outs])
        logits = torch.logsumexp(log_probs, 0) - math.log(len(outs))
        return ModelOutput(logits, outs[0].feature, outs[0].hidden), torch.stack([o.logits for o in outs], 1)


def load_run_model(run_dir: Path) -> tuple[nn.Module, dict, dict]:
    """(model, meta, tensors) of a run directory; an ensemble teacher gives an EnsembleModel with the
    lead member's meta and training statistics."""
    run_dir = Path(run_dir)
    record = json.loads((run_dir / RUN_FILE).read_text()) if (run_dir / RUN_FILE).is_file() else {}
    if not record.get("members"):
        return load_model(run_dir / MODEL_FILE)
    loaded = [load_model(run_dir / m / MODEL_FILE) for m in record["members"]]
    return EnsembleModel([m for m, _, _ in loaded]).eval(), loaded[0][1], loaded[0][2]


@dataclass
class Teacher:
    """A finished teacher run directory, single or ensemble."""
    path: Path
    cfg: dict
    record: dict

    @classmethod
    def load(cls, path: str | Path) -> "Teacher":
        cfg, record = read_run(path)
        check(record.get("kind") == "teacher", f"{path}: is a {record.get('kind')} run, not a teacher")
        return cls(Path(path).resolve(), cfg, record)

    @property
    def model_files(self) -> list[Path]:
        return [self.path / m / MODEL_FILE for m in self.record.get("members") or ["."]]

    @property
    def arch(self) -> str:
        return self.record["student_arch"]

    @property
    def model_cfg(self) -> dict:
        """The resolved model settings of the (lead) member: a student's default architecture."""
        members = self.record.get("members")
        return read_run(self.path / members[0])[0]["model"] if members else self.cfg["model"]

    @cached_property
    def id(self) -> str:
        digest = "".join(file_digest(f) for f in self.model_files)
        if len(self.model_files) > 1:
            digest = hashlib.sha256(digest.encode()).hexdigest()
        return f"{self.record['config_hash']}-{digest[:8]}"

    def model(self) -> tuple[nn.Module, dict, dict]:
        return load_run_model(self.path)

    def head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the (lead member's) linear head: what the teacher's feature is scored by."""
        model = load_model(self.model_files[0])[0]
        check(isinstance(getattr(model, "head", None), nn.Linear), f"{self.path}: the teacher has no linear head")
        return model.head.weight.detach(), model.head.bias.detach()

    def check_data(self, data: Prepared) -> None:
        _, meta, _ = load_model(self.model_files[0])
        check(meta.get("data_fingerprint") == data.fingerprint(),
              f"{self.path}: the teacher was trained on different data than {data.name} now gives")

    def outputs(self, data: Prepared, device: torch.device) -> dict[str, TeacherOutputs]:
        """Logits, features, hidden sequences and members' logits on the full series of every split,
        cached per (checkpoints, data) in the run directory. A single teacher stores no member logits (its
        logits are its one member's); an ensemble's cache written before they existed gains them."""
        key = f"{self.id.split('-')[-1]}-{data.fingerprint()}"
        cache = self.path / f"teacher_outputs-{key}.safetensors"
        ensemble = bool(self.record.get("members"))
        tensors = load_tensors(cache)[0] if cache.is_file() else {}
        if not tensors or (ensemble and "train.member_logits" not in tensors):
            model = self.model()[0].to(device).eval()
            fields = ("logits", "feature", "hidden") if not tensors else ()
            fields += ("member_logits",) if ensemble else ()
            with torch.no_grad():
                for split in SPLITS:
                    x = data.view(split)
                    outs = [_forward(model, x[i:i + 256].to(device), ensemble) for i in range(0, len(x), 256)]
                    for field in fields:
                        parts = [o[field].cpu() for o in outs]
                        tensors[f"{split}.{field}"] = torch.cat(parts) if parts else torch.zeros(0)
            try:
                save_tensors(cache, tensors, {"teacher": str(self.path), "data": data.fingerprint()})
            except OSError:
                pass  # a read-only teacher directory only costs recomputation
        oof = self.out_of_fold(data)
        return {s: TeacherOutputs(tensors[f"{s}.logits"], tensors[f"{s}.feature"], tensors[f"{s}.hidden"],
                                  tensors.get(f"{s}.member_logits", tensors[f"{s}.logits"].unsqueeze(1)),
                                  None if oof is None else oof.get(s))
                for s in SPLITS}

    def out_of_fold(self, data: Prepared) -> dict[str, torch.Tensor] | None:
        """{"train", "val"}: (cases, members, classes) each member's logits from its cross-validation fold that held
        the case out (members in the order of `member_logits`); None unless every member kept them (teachers
        trained with select cv since they are written; benchmarks/teacher_oof.py adds them to older ones)."""
        found = []
        for model_file in self.model_files:
            path = model_file.parent / OOF_FILE
            if not path.is_file():
                return None
            tensors, meta = load_tensors(path)
            if meta.get("data") != data.fingerprint():
                return None
            found.append(tensors["logits"])
        n = len(data.labels["train"])
        stacked = torch.stack(found, 1)
        return {"train": stacked[:n], "val": stacked[n:]}

    def info(self, data: Prepared, device: torch.device) -> dict:
        """What a student's record and fidelity metrics need of its teacher."""
        return {"arch": self.arch, "id": self.id, "test_logits": self.outputs(data, device)["test"].logits,
                "path": str(self.path), "record": self.record}


def _forward(model: nn.Module, x: torch.Tensor, ensemble: bool) -> dict[str, torch.Tensor]:
    out, members = model.forward_members(x) if ensemble else (model(x), None)
    return {"logits": out.logits, "feature": out.feature, "hidden": out.hidden, "member_logits": members}


def teacher_outputs(teacher_dir: Path, data: Prepared, device: torch.device) -> dict[str, TeacherOutputs]:
    return Teacher.load(teacher_dir).outputs(data, device)


# -- training --------------------------------------------------------------------------------------

def _members(cfg: dict) -> list[tuple[str, int]]:
    archs = [a.strip() for a in str(cfg["model"]["arch"] or "lstm").split(",") if a.strip()]
    seed, size = cfg["train"]["seed"], int(cfg["ensemble"]["size"])
    check(size >= 1, f"ensemble.size must be at least 1, got {size}")
    return [(arch, seed + i) for arch in archs for i in range(size)]


def train_teacher(cfg: dict, resume: bool = False) -> Run:
    """Train a teacher on full series. Epochs by stratified k-fold CV on the training split, then a
    refit on the whole training split (train.select = cv, the default), or selection on the
    validation split (acc_loss, loss). Several architectures or ensemble.size > 1 train one member
    each, combined as their mean (ensemble.combine = mean) or the best by score (best)."""
    check(cfg["teacher"] is None, "a teacher run takes no 'teacher' setting")
    check(cfg["method"]["name"] == "base", "a teacher is trained with method 'base'")
    members = _members(cfg)
    for arch, _ in members:
        build_model(arch, 1, 2, cfg["model"]["layers"], cfg["model"]["hidden"])  # fail fast
    if len(members) == 1:
        cfg = {**cfg, "model": {**cfg["model"], "arch": members[0][0]}}
        return _train_single(cfg, resume)
    return _train_ensemble(cfg, members, resume)


def _train_single(cfg: dict, resume: bool) -> Run:
    from . import threads
    cfg = {**cfg, "prefix": {"earliness": 1.0, "mode": cfg["prefix"]["mode"], "channels": None}}
    data = load_prepared(cfg["data"])
    out = open_run_dir(cfg["out"] or default_out(cfg, "teacher"), resume)
    cfg = {**cfg, "out": str(out)}
    splits = {s: Split(*data.split(s)) for s in SPLITS}
    extra, epochs = {}, None
    if (cfg["train"]["select"] or "cv") == "cv":
        threads.apply(cfg["train"].get("threads"))
        whole = Split(torch.cat([splits["train"].x, splits["val"].x]), torch.cat([splits["train"].y, splits["val"].y]))
        cv = _cross_validate(cfg, data, whole, out)
        if cv is not None:
            splits = {"train": whole, "val": Split(whole.x[:0], whole.y[:0]), "test": splits["test"]}
            epochs = cv["epochs"]
            extra = {"cv": cv, "val": {"val_acc": cv["acc"], "val_loss": cv["loss"], "how": f"{cv['folds']}-fold CV"}}
        else:  # a class too small for two folds: fall back to the validation split
            cfg = {**cfg, "train": {**cfg["train"], "select": "acc_loss"}}
    return fit_and_save(cfg, "teacher", data, splits, None, out, resume, extra, epochs)


def _cross_validate(cfg: dict, data: Prepared, whole: Split, out: Path) -> dict | None:
    """Fold curves and the chosen epochs, stored in cv.json so that --resume skips the folds."""
    settings = config_hash({**cfg, "out": None})
    if (out / CV_FILE).is_file():
        stored = json.loads((out / CV_FILE).read_text())
        check(stored.get("config_hash") == settings, f"{out / CV_FILE}: the folds were run with other settings; "
              "resume with the same settings or choose another --out")
        return stored.get("result")
    result = run_cv(cfg, data, whole)
    record = None if result is None else {"folds": result.folds, "epochs": result.epochs, "acc": result.score[0],
                                          "loss": result.score[1], "mean_acc": result.mean_acc,
                                          "mean_loss": result.mean_loss}
    if result is not None:   # before cv.json, whose presence lets a resumed run skip the folds
        save_out_of_fold(out, result.oof, data)
    write_json(out / CV_FILE, {"config_hash": settings, "result": record})
    return record


def run_cv(cfg: dict, data: Prepared, whole: Split):
    """The teacher's k-fold CV over train + val (`whole`): a CVResult, or None when a class is too small."""
    t, m = cfg["train"], cfg["model"]
    min_epochs = t["min_epochs"] if t["min_epochs"] is not None else t["epochs"] // 4
    build = lambda: build_method("base", build_model(m["arch"], data.channels, data.n_classes, m["layers"],  # noqa: E731
                                                     m["hidden"]), None)
    cv_cfg = {**t, "select": "acc_loss", "progress": t.get("progress", True)}
    return cross_validate_epochs(build, whole.x, whole.y, cv_cfg, resolve_device(t["device"]), t.get("cv_folds") or 5,
                                 min_epochs)


def save_out_of_fold(out: Path, oof, data: Prepared) -> None:
    """The CV's out-of-fold logits of train + val (in that order), for `Teacher.out_of_fold`."""
    save_tensors(out / OOF_FILE, {"logits": torch.as_tensor(oof)}, {"data": data.fingerprint()})


def selection_score(record: dict) -> tuple[float, float]:
    """(accuracy, loss) a teacher was selected by: cross-validated, or on the validation split."""
    if record.get("cv"):
        return record["cv"]["acc"], record["cv"]["loss"]
    val = record.get("val") or {}
    return val.get("val_acc", 0.0), val.get("val_loss", math.inf)


def _train_ensemble(cfg: dict, members: list[tuple[str, int]], resume: bool) -> Run:
    import time
    from .report.model_card import model_card
    combine = cfg["ensemble"]["combine"]
    check(combine in ("mean", "best"), f"ensemble.combine must be mean or best, got {combine!r}")
    cfg = {**cfg, "prefix": {"earliness": 1.0, "mode": cfg["prefix"]["mode"], "channels": None}}
    out = open_run_dir(cfg["out"] or default_out({**cfg, "model": {**cfg["model"], "arch": "ensemble"}}, "teacher"),
                       resume)
    started = time.perf_counter()
    runs = []
    for arch, seed in members:
        name = f"members/{arch}-s{seed}"
        path = out / name
        member_cfg = {**cfg, "model": {**cfg["model"], "arch": arch}, "train": {**cfg["train"], "seed": seed},
                      "ensemble": {"size": 1, "combine": "mean"}, "out": str(path)}
        run = Run(path, read_run(path)[1]) if (path / RUN_FILE).is_file() else _train_single(member_cfg, resume)
        runs.append((name, run))
    ranked = sorted(runs, key=lambda r: (-selection_score(r[1].record)[0], selection_score(r[1].record)[1]))
    chosen = ranked if combine == "mean" else ranked[:1]
    model = EnsembleModel([load_model(r.path / MODEL_FILE)[0] for _, r in chosen]).eval()
    data = load_prepared(cfg["data"])
    test = evaluate_split(model, Split(*data.split("test")), None)
    lead = chosen[0][1].record
    archs = sorted({r.record["student_arch"] for _, r in chosen})
    label = "+".join(archs) + (f"x{len(chosen)}" if len(chosen) > len(archs) else "")
    record = {
        "kind": "teacher", "status": "finished", "dataset": data.name, "method": "base", "earliness": 1.0,
        "prefix_mode": cfg["prefix"]["mode"], "seed": cfg["train"]["seed"],
        "student_arch": label, "teacher_arch": label, "teacher_id": None, "version": lead["version"],
        "config_hash": config_hash({**cfg, "out": None}), "versions": versions(),
        "members": [n for n, _ in chosen], "combine": combine,
        "candidates": [{"member": n, "arch": r.record["student_arch"], "seed": r.record["seed"],
                        "selection": dict(zip(("acc", "loss"), selection_score(r.record)))} for n, r in ranked],
        "data": data.info, "epochs": sum(r.record["epochs"] for _, r in runs),
        "train_seconds": round(sum(r.record["train_seconds"] for _, r in runs), 3),
        "seconds_per_epoch": lead["seconds_per_epoch"], "wall_seconds": round(time.perf_counter() - started, 3),
        "peak_memory_mb": max(r.record["peak_memory_mb"] for _, r in runs), "best_epoch": lead["best_epoch"],
        "device": lead["device"], "threads": lead["threads"], "warmup": 0,
        "val": lead.get("val", {}), "val_metrics": {}, "test": test, "history": [],
    }
    cfg = {**cfg, "out": str(out)}
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    write_json(out / METRICS_FILE, test)
    write_text(out / "model_card.md", model_card(cfg, record, None))
    write_json(out / RUN_FILE, record)
    return Run(out, record)
