"""Training a teacher on full series: one run, or an ensemble of runs stored as one teacher, with epochs by
cross-validation (the default) and each case's out-of-fold logits kept (see docs/protocol.md, "Selection")."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import yaml

from .config import config_hash
from .data import Prepared
from .distill import build_method
from .errors import check
from .fitting import evaluate_split, fit_and_save
from .models import build_model
from .rundir import (METRICS_FILE, MODEL_FILE, RUN_FILE, Run, check_resume, default_out, load_prepared, open_run_dir,
                     read_run, resolve_device, versions)
from .teacher import CV_FILE, OOF_FILE, SPLITS, EnsembleModel
from .train import Split, load_model
from .train.checkpoint import save_tensors, write_json, write_text
from .train.cv import cross_validate_epochs


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
    resolve_device(cfg["train"]["device"])   # before the run directory is made
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
    resolve_device(cfg["train"]["device"])   # before the run directory is made
    out = open_run_dir(cfg["out"] or default_out({**cfg, "model": {**cfg["model"], "arch": "ensemble"}}, "teacher"),
                       resume)
    cfg = {**cfg, "out": str(out)}
    if resume:
        check_resume(out, cfg)   # finished members are reused: only with the settings they were trained with
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
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
    write_json(out / METRICS_FILE, test)
    write_text(out / "model_card.md", model_card(cfg, record, None))
    write_json(out / RUN_FILE, record)
    return Run(out, record)
