"""Fitting one model into a run directory: defaults, the trainer, the checkpoint and the run record."""
from __future__ import annotations

import time
from pathlib import Path

import torch
import yaml

from . import __version__
from .config import config_hash
from .data import Prepared
from .distill import build_method
from .distill.base import method_class
from .evaluate import classification_metrics
from .models import build_model
from .rundir import METRICS_FILE, MODEL_FILE, RUN_FILE, STATE_FILE, Run, check_resume, resolve_device, versions
from .train import Split, Trainer, predict_logits, save_model
from .train.checkpoint import write_json, write_text


def train_defaults(cfg: dict, kind: str, method_cls) -> dict:
    t = dict(cfg["train"])
    if t["select"] is None:
        t["select"] = "cv" if kind == "teacher" else "loss"
    if t["min_epochs"] is None:
        t["min_epochs"] = t["epochs"] // 4 if kind == "teacher" else 0
    if t["warmup"] is None:
        t["warmup"] = t["epochs"] // 2 if method_cls.two_stage else 0
    return t


def fit_and_save(cfg: dict, kind: str, data: Prepared, splits: dict[str, Split], teacher_info: dict | None,
                 out: Path, resume: bool, extra: dict | None = None, epochs: int | None = None) -> Run:
    """Train, save the checkpoint and the record. `epochs` (a teacher refit after cross-validation) runs
    that many epochs while config.yaml keeps the budget; `extra` joins the record."""
    from . import threads
    from .report.model_card import model_card
    device = resolve_device(cfg["train"]["device"])
    threads.apply(cfg["train"].get("threads"))
    method_cls = method_class(cfg["method"]["name"])
    train_cfg = train_defaults(cfg, kind, method_cls)
    cfg = {**cfg, "train": train_cfg}
    torch.manual_seed(train_cfg["seed"])
    m = cfg["model"]
    student = build_model(m["arch"], splits["train"].x.shape[1], data.n_classes, m["layers"], m["hidden"])
    m = {"arch": m["arch"], "layers": student.layers, "hidden": student.width}  # saved resolved
    cfg = {**cfg, "model": m}
    dims = splits["train"].teacher.dims if splits["train"].teacher is not None else None
    distiller = build_method(method_cls.name, student, dims, cfg["method"]["options"], train_cfg["warmup"])
    if distiller.needs_teacher_head:
        from .teacher import Teacher
        distiller.attach_teacher_head(*Teacher.load(teacher_info["path"]).head())
    trainer = Trainer(distiller, {**train_cfg, "epochs": epochs or train_cfg["epochs"]}, device, out / STATE_FILE,
                      desc=f"{kind} {data.name} {m['arch']}" + (f" {method_cls.name} e={cfg['prefix']['earliness']}"
                                                                if kind == "student" else ""))
    if resume and (out / STATE_FILE).exists():
        check_resume(out, cfg)                 # both refuse other settings before config.yaml changes
        trainer.load_state(out / STATE_FILE)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    started = time.perf_counter()
    fit = trainer.fit(splits["train"], splits["val"])
    student = distiller.student.cpu().eval()
    meta = {"kind": kind, "classes": data.classes, "length": data.length, "reference_length": data.reference_length,
            "equal_length": data.equal_length, "prefix": cfg["prefix"], "data_fingerprint": data.fingerprint()}
    test = evaluate_split(student, splits["test"], teacher_info)   # refuses a diverged model before it is saved
    save_model(out / MODEL_FILE, student, meta, {"data.mean": data.mean, "data.std": data.std,
                                                 **distiller.checkpoint_tensors()})
    record = {
        "kind": kind, "status": "finished", "dataset": data.name, "method": method_cls.name,
        "earliness": cfg["prefix"]["earliness"], "prefix_mode": cfg["prefix"]["mode"], "seed": train_cfg["seed"],
        "student_arch": m["arch"], "teacher_arch": (teacher_info or {}).get("arch", m["arch"]),
        "teacher_id": (teacher_info or {}).get("id"), "teacher_lead": (teacher_info or {}).get("lead"),
        "version": __version__,
        "config_hash": config_hash({**cfg, "teacher": (teacher_info or {}).get("id")}),  # not the teacher's path
        "versions": versions(), "device": str(device), "threads": torch.get_num_threads(),
        "data": data.info, "warmup": distiller.warmup, "best_epoch": fit.best_epoch, "epochs": fit.epochs_run,
        "train_seconds": round(fit.train_seconds, 3), "seconds_per_epoch": round(fit.seconds_per_epoch, 4),
        "wall_seconds": round(time.perf_counter() - started, 3), "peak_memory_mb": round(fit.peak_memory_mb, 1),
        "val": fit.history[fit.best_epoch] if fit.best_epoch is not None and fit.history else {},
        "val_metrics": evaluate_split(student, splits["val"], None) if len(splits["val"]) else {},
        "test": test, "history": fit.history, **(extra or {}),
    }
    write_json(out / METRICS_FILE, test)
    write_text(out / "model_card.md", model_card(cfg, record, teacher_info))
    write_json(out / RUN_FILE, record)
    (out / STATE_FILE).unlink(missing_ok=True)
    return Run(out, record)


def evaluate_split(student, split: Split, teacher_info: dict | None) -> dict:
    probs = torch.softmax(predict_logits(student, split.x), 1).cpu().numpy()
    teacher_probs = None
    if teacher_info is not None:
        teacher_probs = torch.softmax(teacher_info["test_logits"], 1).numpy()
    return classification_metrics(probs, split.y.numpy(), teacher_probs)
