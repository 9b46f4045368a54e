"""Runs: distil a student from a teacher run, evaluate a run, predict with it.

The pieces live along their seams: `rundir` (run directories), `fitting` (one model into a run
directory), `teacher` (teachers, single or ensemble, and their cached outputs). Their names are
importable from here too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from .config import DEFAULTS
from .distill.base import method_class
from .errors import check
from .fitting import evaluate_split, fit_and_save
from .models import build_model
from .prefix import check_channels, observed_samples, prefix_steps, student_view
from .rundir import (METRICS_FILE, MODEL_FILE, RUN_FILE, STATE_FILE, Run, _prepared, default_out,
                     load_prepared, open_run_dir, read_run, resolve_device, unfinished, versions)
from .teacher import SPLITS, Teacher, load_run_model, teacher_outputs
from .teacher_training import train_teacher
from .train import Split, predict_logits
from .train.checkpoint import write_json

__all__ = ["METRICS_FILE", "MODEL_FILE", "RUN_FILE", "STATE_FILE", "Run", "Teacher", "distill", "evaluate_run",
           "evaluate_split", "load_prepared", "predict", "read_run", "resolve_device", "teacher_outputs",
           "train_teacher", "unfinished", "versions", "_prepared"]


def distill(cfg: dict, resume: bool = False) -> Run:
    """Train a student on prefixes with the method in cfg['method'], from the teacher run cfg['teacher']."""
    check(cfg["teacher"] is not None, "distillation needs a teacher run directory (--teacher RUN_DIR)")
    check(cfg["train"]["select"] != "cv", "train.select cv is for teachers; a student is selected on validation")
    teacher = Teacher.load(cfg["teacher"])
    method_cls = method_class(cfg["method"]["name"])
    options = method_cls.resolve_options(cfg["method"]["options"])
    model = cfg["model"]
    if model["arch"] is None:  # the teacher's (lead member's) architecture, with any explicit size kept
        model = {k: teacher.model_cfg[k] if v is None else v for k, v in model.items()}
    check_data_settings(cfg["data"], teacher)
    cfg = {**cfg, "data": teacher.cfg["data"], "model": model}
    build_model(cfg["model"]["arch"], 1, 2, cfg["model"]["layers"], cfg["model"]["hidden"])  # fail fast
    data = load_prepared(cfg["data"])
    teacher.check_data(data)
    teacher.check_options(method_cls.name, options, data)
    prefix_steps(cfg["prefix"]["earliness"], data.length)
    check_channels(cfg["prefix"]["channels"], data.channels)
    device = resolve_device(cfg["train"]["device"])   # before the run directory is made
    out = open_run_dir(cfg["out"] or default_out(cfg, "student"), resume)
    outputs = teacher.outputs(data, device)  # test logits serve fidelity for every method
    splits = {s: Split(data.view(s, **cfg["prefix"]), data.labels[s],
                       outputs[s] if method_cls.needs_teacher else None) for s in SPLITS}
    cfg = {**cfg, "out": str(out), "teacher": str(teacher.path)}
    return fit_and_save(cfg, "student", data, splits, teacher.info(data, device), out, resume)


def check_data_settings(data: dict, teacher: Teacher) -> None:
    """A student's data is its teacher's: a data setting other than the default and the teacher's is refused
    (a run's own config.yaml holds the teacher's, and passes; so do paths as stored before a move)."""
    own = teacher.cfg["data"]
    stored = yaml.safe_load((teacher.path / "config.yaml").read_text())["data"]
    for key, value in data.items():
        check(value in (DEFAULTS["data"].get(key), own.get(key), stored.get(key)),
              f"data.{key} = {value!r} differs from the teacher's ({own.get(key)!r}, {teacher.path}): a student "
              "trains on its teacher's data; leave data settings out, or train a teacher on that data")


# -- evaluation and prediction --------------------------------------------------------------------

def evaluate_run(run_dir: str | Path, device: str = "auto", test_path: str | Path | None = None,
                 label_column="run", warnings: list | None = None) -> dict:
    """Recompute the test metrics of a finished run from its checkpoint; writes metrics.json.
    With `test_path`, score the labelled series of that file instead, and write nothing (`warnings`, when
    given, receives one line per kind of row that cannot be what the model was trained on). An anytime run
    is scored by its policies' decisions and at every checkpoint (early.assess)."""
    if read_run(run_dir)[1].get("kind") == "anytime":
        from .early.assess import evaluate_anytime
        return evaluate_anytime(run_dir, device, test_path, label_column, warnings)
    if test_path is not None:
        from .evaluate.new_data import evaluate_file
        return evaluate_file(run_dir, test_path, label_column, device, warnings)
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    cfg, record = read_run(run_dir)
    model, meta, _ = load_run_model(run_dir)
    data = load_prepared(cfg["data"])
    split = Split(data.view("test", **cfg["prefix"]).to(dev), data.y_test)
    model = model.to(dev)
    info = None
    if record["kind"] == "student":
        info = {"test_logits": Teacher.load(cfg["teacher"]).outputs(data, dev)["test"].logits}
    metrics = evaluate_split(model, split, info)
    write_json(run_dir / METRICS_FILE, metrics)
    return metrics


def predict(run_dir: str | Path, series: list[np.ndarray], full: bool = False, what: str = "input",
            device: str = "auto", policy: str | None = None) -> tuple[list[str], np.ndarray, dict]:
    """Class labels and probabilities for new series, each row starting at the series' first sample.

    A row goes through the same view as in training: a student uses the first ceil(e * T) raw
    samples (T: the training series' length), so a whole series and its prefix give the same
    answer. `full=True` says the rows are whole series; without it, rows longer than the trained
    prefix get a warning, as do rows shorter than it (held at their last value, like a series
    that ended) and, for a teacher, rows shorter than a whole series. A student trained on a
    channel subset takes either all channels or just its subset.

    An anytime run (`earlykd early`) answers with its policy's decisions (`policy`: another calibrated one), on
    the CPU: each row is a series as far as it has arrived (early.assess), or with `full` a whole series (one
    shorter than T has ended: every checkpoint is reached, as `evaluate` scores whole series).
    """
    from .data.prepare import clean_rows
    run_dir = Path(run_dir)
    if read_run(run_dir)[1].get("kind") == "anytime":
        from .early.assess import predict_anytime
        return predict_anytime(run_dir, series, policy, what, full)
    check(policy is None, f"{run_dir}: a policy applies to `earlykd early` runs, this is a per-earliness run")
    model, meta, tensors = load_run_model(run_dir)
    check(meta.get("reference_length"), f"{run_dir}: trained before the prefix contract (no reference length); "
                                        "train it again with this version")
    mean, std = tensors["data.mean"], tensors["data.std"]
    student = meta["kind"] == "student"
    prefix = meta["prefix"] if student else {"earliness": 1.0, "mode": "stretch", "channels": None}
    subset, total = prefix["channels"], meta["reference_length"]
    accepted = [mean.numel()] + ([len(subset)] if subset and len(subset) != mean.numel() else [])
    rows = clean_rows(series, accepted, what)
    keep = observed_samples(prefix["earliness"], total)
    lengths = np.array([r.shape[-1] for r in rows])
    warnings = _predict_warnings(lengths, keep, total, student, full, meta.get("equal_length", True), prefix)
    x = torch.empty(len(rows), len(subset) if subset else mean.numel(),
                    prefix_steps(prefix["earliness"], meta["length"]) if prefix["mode"] == "truncate" else meta["length"])
    for n_channels in {r.shape[0] for r in rows}:  # all channels, or a student's subset given alone
        idx = [i for i, r in enumerate(rows) if r.shape[0] == n_channels]
        own = subset is not None and n_channels != mean.numel()
        m, sd = (mean[subset], std[subset]) if own else (mean, std)
        x[idx] = student_view([rows[i] for i in idx], prefix["earliness"], prefix["mode"], total, meta["length"],
                              m, sd, None if own else subset)
    dev = resolve_device(device)
    model = model.to(dev).eval()
    with torch.no_grad():
        probs = torch.softmax(predict_logits(model, x.to(dev)), 1).cpu().numpy()
    labels = [meta["classes"][k] for k in probs.argmax(1)]
    return labels, probs, {"classes": meta["classes"], "trained_earliness": prefix["earliness"],
                           "samples_used": keep, "warnings": warnings}


def _predict_warnings(lengths: np.ndarray, keep: int, total: int, student: bool, full: bool, equal_length: bool,
                      prefix: dict) -> list[str]:
    """One line per kind of input that cannot be what the model was trained on."""
    from .data.prepare import longer_than_reference
    out = [] if student and not full else longer_than_reference(lengths, total)
    longer, shorter = int((lengths > keep).sum()), int((lengths < keep).sum())
    if student and not full and longer:
        out.append(f"{longer} row(s) are longer than the trained prefix of {keep} samples (earliness "
                   f"{prefix['earliness']} of {total}); only their first {keep} samples are used "
                   "(pass --full to say the rows are whole series)")
    if shorter and equal_length:
        what = "a whole series" if not student else "the trained prefix"
        out.append(f"{shorter} row(s) have fewer samples than {what} ({keep}); each is held at its last value, "
                   "as for a series that ended" + ("" if student else "; a teacher is meant for whole series"))
    return out
