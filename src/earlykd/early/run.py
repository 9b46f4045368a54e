"""`earlykd early`: train an anytime student from a teacher run and calibrate stopping policies on validation.

The run directory holds what a per-earliness student's does (config.yaml, model.safetensors,
run.json with kind "anytime", metrics.json) plus decide.json: the calibrated policies and the default
(the first of those named, or without names the registered policy of highest cross-validated validation HM).
`prefix.earliness` records the checkpoint levels.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from .. import __version__, runs, threads
from ..config import DEFAULTS, config_hash
from ..decide import POLICIES, Policy, best_on_validation, build_policy, calibrate_policies, policy_names
from ..distill.base import method_class
from ..errors import EarlykdError, check, did_you_mean
from ..evaluate import classification_metrics
from ..models import build_model
from ..teacher import Teacher
from ..train import load_model, save_model
from ..report.model_card import anytime_card
from ..prefix import check_channels
from ..rundir import check_resume
from ..train.checkpoint import write_json, write_text
from .anytime import LevelSplit, anytime_options, checkpoints, parse_levels, student_train_cfg, train_anytime
from .aria import AriaConfig
from .crossfit import crossfit_anytime, fold_file
from .decider import Decider, checkpoint_earliness

DECIDE_FILE = "decide.json"


def _softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), -1).numpy()


def train_early(cfg: dict, levels=None, policies: list[str] | None = None, resume: bool = False) -> runs.Run:
    """Train the anytime student of cfg['method'] from the teacher run cfg['teacher'] and calibrate `policies`.
    Levels and policies not given come from the config (an earlier run's config.yaml holds both), else the
    defaults: levels 0.05, 0.10, ..., 1.0; every registered policy, the default being the one of highest
    validation HM (named policies: the first is the default)."""
    check(cfg["teacher"] is not None, "an anytime student needs a teacher run directory (--teacher RUN_DIR)")
    early = {**DEFAULTS["early"], **(cfg.get("early") or {})}
    named = policies if policies is not None else early["policies"]
    named = None if named is None else policy_names([named] if isinstance(named, str) else list(named))  # auto: None
    policies = list(POLICIES) if named is None else named
    check(len(policies) > 0, "no stopping policy given")
    given = cfg["prefix"]["earliness"]
    check(given is None or isinstance(given, list), f"prefix.earliness {given!r} is one level; an anytime student "
          "trains on several: give them with --levels (e.g. --levels 0.2,0.4,1.0) or as a list in prefix.earliness")
    if levels is None and given is not None:
        levels = given
    teacher = Teacher.load(cfg["teacher"])
    method_cls = method_class(cfg["method"]["name"])
    options = anytime_options(method_cls.name, cfg["method"]["options"])
    check(not (early.get("crossfit") and early["sampling"] == "aria"),
          "early.crossfit needs early.sampling = uniform (ARIA fits its regions on one split)")
    model = cfg["model"]
    if model["arch"] is None:
        model = {k: teacher.model_cfg[k] if v is None else v for k, v in model.items()}
    build_model(model["arch"], 1, 2, model["layers"], model["hidden"])  # fail fast
    if early["sampling"] == "aria":
        AriaConfig.of(early.get("aria"))  # fail fast
    teacher_data = runs.load_prepared(teacher.cfg["data"])
    check(len(teacher_data.labels["val"]) > 0,
          "stopping policies are calibrated on validation: the validation split is empty")
    teacher.check_data(teacher_data)
    teacher.check_options(method_cls.name, options, teacher_data)
    check_channels(cfg["prefix"]["channels"], teacher_data.channels)
    data_cfg, data = student_data(teacher.cfg["data"], teacher_data, early.get("length"))
    levels = checkpoints(parse_levels(levels), data.reference_length, data.length)
    prefix = {"earliness": levels, "mode": cfg["prefix"]["mode"], "channels": cfg["prefix"]["channels"]}
    cfg = {**cfg, "data": data_cfg, "model": model, "prefix": prefix,
           "early": {**early, "policies": None if named is None else policies}}
    device = runs.resolve_device(cfg["train"]["device"])   # before the run directory is made
    out = runs.open_run_dir(cfg["out"] or runs.default_out(cfg, "anytime"), resume)
    threads.apply(cfg["train"].get("threads"))
    train_cfg = student_train_cfg(cfg["train"], method_cls.two_stage)
    cfg = {**cfg, "train": train_cfg, "out": str(out), "teacher": str(teacher.path)}
    # a resumed run keeps its config.yaml until its saved state has been accepted (training refuses other settings)
    saved = [out / runs.STATE_FILE] + [fold_file(out / runs.STATE_FILE, k) for k in range(int(early.get("crossfit") or 0))]
    resuming = resume and any(path.exists() for path in saved)
    if resuming:
        check_resume(out, cfg)
    else:
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    outputs = teacher.outputs(teacher_data, device)
    started = time.perf_counter()
    aria = None
    if early["sampling"] == "aria":
        aria = {"config": early["aria"], "guide": outputs}
        if AriaConfig.of(early["aria"]).normalise:
            aria["ambiguity"] = teacher_ambiguity(teacher, teacher_data, levels, prefix["mode"], outputs["train"],
                                                  device)
    folds = int(early.get("crossfit") or 0)
    teacher_outputs = outputs if method_cls.needs_teacher else None
    args = (data, teacher_outputs, method_cls.name, cfg["method"]["options"], model, train_cfg, levels, prefix["mode"],
            prefix["channels"], device)
    desc = f"anytime {data.name} {model['arch']} {method_cls.name}"
    level_norm = bool(early.get("level_norm", True))
    if folds:   # (with ARIA refused above)
        distiller, fit, cal_logits, cal_y, cal_ready, folds = crossfit_anytime(*args, folds, level_norm,
                                                                               out / runs.STATE_FILE, resume, desc)
        cal_features, cal_tensors = None, {}   # fold students' features are not comparable (early/crossfit.py)
    else:
        fitted = train_anytime(*args, out / runs.STATE_FILE, resume, desc=desc, aria=aria, level_norm=level_norm)
        distiller, fit, val = fitted[:3]
    if resuming:
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    student = distiller.student.cpu().eval()
    meta = {"kind": "anytime", "classes": data.classes, "length": data.length, "reference_length": data.reference_length,
            "equal_length": data.equal_length, "prefix": prefix, "data_fingerprint": data.fingerprint()}
    method_tensors = distiller.checkpoint_tensors()  # e.g. DLF's heads, for the uncertainty policy
    earliness = checkpoint_earliness(levels, data.reference_length)
    if not folds:
        cal_logits, cal_features = val.outputs(student)
        cal_y, cal_tensors, cal_ready = data.labels["val"].numpy(), method_tensors, val.ready
    chosen = calibrate_policies(list(policies), cal_logits, cal_y, earliness, cal_features, cal_tensors, cal_ready)
    default = policies[0] if named is not None else best_on_validation(chosen)
    test = LevelSplit.of(data, "test", levels, prefix["mode"], prefix["channels"])
    test_logits, test_features = test.outputs(student)
    scores = scores_on_test(test_logits, data.labels["test"].numpy(), outputs["test"].logits,
                         levels, chosen, earliness, test_features, test.ready)
    # saved once the test scores exist: a diverged model is refused there, before any checkpoint is written
    save_model(out / runs.MODEL_FILE, student, meta, {"data.mean": data.mean, "data.std": data.std, **method_tensors})
    record = {
        "kind": "anytime", "status": "finished", "dataset": data.name, "method": method_cls.name,
        "earliness": levels, "prefix_mode": prefix["mode"], "seed": train_cfg["seed"],
        "student_arch": model["arch"], "teacher_arch": teacher.arch, "teacher_id": teacher.id,
        "teacher_lead": teacher.lead,
        "version": __version__, "config_hash": config_hash({**cfg, "teacher": teacher.record["config_hash"]}),
        "versions": runs.versions(), "device": str(device), "threads": torch.get_num_threads(), "data": data.info,
        "warmup": distiller.warmup, "best_epoch": fit.best_epoch, "epochs": fit.epochs_run,
        "train_seconds": round(fit.train_seconds, 3), "seconds_per_epoch": round(fit.seconds_per_epoch, 4),
        "wall_seconds": round(time.perf_counter() - started, 3), "peak_memory_mb": round(fit.peak_memory_mb, 1),
        "val": fit.history[fit.best_epoch] if fit.best_epoch is not None and fit.history else {},
        "policies_val": {name: p.validation for name, p in chosen.items()}, "default_policy": default,
        "default_policy_by": "the first named" if named is not None
                             else f"highest cross-validated {'out-of-fold' if folds else 'validation'} HM",
        "calibration": {"on": "out-of-fold", "folds": folds, "cases": len(cal_y)} if folds else
                       {"on": "validation", "cases": len(cal_y)},
        **scores, "history": fit.history, "sampling": early["sampling"],
    }
    if aria is not None:
        sampler = fitted[3]
        record["aria"] = {"config": early["aria"], "regions": sampler.regions.describe(), "trace": sampler.trace}
    write_json(out / DECIDE_FILE, {"default": default, "policies": {n: p.to_dict() for n, p in chosen.items()}})
    write_json(out / runs.METRICS_FILE, scores)
    write_json(out / runs.RUN_FILE, record)
    write_text(out / "model_card.md", anytime_card(cfg, record))
    (out / runs.STATE_FILE).unlink(missing_ok=True)
    for fold in range(folds):
        fold_file(out / runs.STATE_FILE, fold).unlink(missing_ok=True)
    (out / "aria_state.json").unlink(missing_ok=True)
    return runs.Run(out, record)


def student_data(teacher_cfg: dict, teacher_data, length: int | None):
    """(data config, Prepared) of the student: the teacher's, or the same cases on a grid of `length` steps
    (early.length; the teacher keeps its own grid, its outputs are per case)."""
    if length is None or length == teacher_data.length:
        return teacher_cfg, teacher_data
    cfg = {**teacher_cfg, "length": length}
    data = runs.load_prepared(cfg)
    for split in ("train", "val", "test"):
        check(torch.equal(data.labels[split], teacher_data.labels[split]),
              f"early.length = {length} changed the {split} split's cases; the teacher's outputs would not fit")
    return cfg, data


def teacher_ambiguity(teacher: Teacher, data, levels: list[float], mode: str, full, device) -> np.ndarray:
    """(levels, train cases) KL(teacher on the full series || teacher on the prefix): how much the prefix
    alone leaves open, for ARIA's optional normalisation."""
    from ..train import predict_logits
    from .aria import kl_per_sample
    model = teacher.model()[0].to(device).eval()
    return np.stack([kl_per_sample(full.logits.to(device), predict_logits(model, data.view("train", e, mode).to(device)))
                     .cpu().numpy() for e in levels])


def scores_on_test(logits: np.ndarray, y: np.ndarray, teacher_logits: torch.Tensor | None, levels: list[float],
                policies: dict[str, Policy], earliness: np.ndarray, features: np.ndarray | None = None,
                ready: np.ndarray | None = None) -> dict:
    """Test metrics per level, their mean over levels ("test"), and each policy's (HM, accuracy, earliness);
    fidelity to the teacher when its logits are given; `ready` as in decide.first_stops."""
    teacher_probs = None if teacher_logits is None else torch.softmax(teacher_logits, 1).numpy()
    per_level = {str(e): classification_metrics(_softmax(logits[m]), y, teacher_probs) for m, e in enumerate(levels)}
    mean = {k: float(np.mean([m[k] for m in per_level.values()])) for k in next(iter(per_level.values()))}
    decided = {name: dict(zip(("hm", "accuracy", "earliness"), p.score(logits, y, earliness, features, ready)))
               for name, p in policies.items()}
    return {"test": mean, "test_levels": per_level, "test_policies": decided}


def read_decide(run_dir: Path) -> dict:
    """The run's decide.json: {"default": name, "policies": {name: stored policy}}, or one line saying what is wrong."""
    path = Path(run_dir) / DECIDE_FILE
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EarlykdError(f"{run_dir}: no readable {DECIDE_FILE} ({' '.join(str(exc).split())[:120]})") from None
    ok = (isinstance(stored, dict) and isinstance(stored.get("policies"), dict) and stored["policies"]
          and stored.get("default") in stored["policies"]
          and all(isinstance(p, dict) and "name" in p for p in stored["policies"].values()))
    check(ok, f"{path}: not a stored set of policies (expected default and policies)")
    return stored


def load_decider(run_dir: str | Path, policy: str | None = None) -> Decider:
    """The anytime student of a run directory with its calibrated policy (default: the run's own)."""
    run_dir = Path(run_dir)
    model, meta, tensors = load_model(run_dir / runs.MODEL_FILE)
    check(meta.get("kind") == "anytime", f"{run_dir}: is a {meta.get('kind')} run, not an anytime student "
                                         "(train one with `earlykd early`)")
    stored = read_decide(run_dir)
    name = policy or stored["default"]
    check(name in stored["policies"], f"{run_dir}: policy '{name}' was not calibrated for this run "
                                      f"({did_you_mean(name, stored['policies'], 'calibrated: ' + ', '.join(stored['policies']))})")
    prefix = meta["prefix"]
    return Decider(model, build_policy(stored["policies"][name]), prefix["earliness"], prefix["mode"],
                   prefix["channels"], meta["reference_length"], meta["length"], tensors["data.mean"],
                   tensors["data.std"], meta["classes"])
