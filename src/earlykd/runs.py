"""Runs: train a teacher or a student into a run directory, evaluate it, predict with it."""
from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import yaml

from . import __version__
from .config import config_hash
from .data import Prepared, load_raw, prepare
from .distill import TeacherOutputs, build_method
from .distill.base import method_class
from .errors import EarlykdError, check
from .evaluate import classification_metrics
from .models import build_model
from .prefix import observed_samples, prefix_steps, student_view
from .train import Split, Trainer, load_model, predict_logits, save_model
from .train.checkpoint import load_tensors, save_tensors, writable_dir, write_json, write_text

MODEL_FILE, STATE_FILE, RUN_FILE, METRICS_FILE = "model.safetensors", "last.safetensors", "run.json", "metrics.json"


@dataclass
class Run:
    """A finished run directory and its record (config, timings, validation and test metrics)."""
    path: Path
    record: dict

    @property
    def metrics(self) -> dict:
        return self.record["test"]


def versions() -> dict:
    import aeon
    import sklearn
    return {"earlykd": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "aeon": aeon.__version__, "python": platform.python_version()}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda"):
        check(torch.cuda.is_available(), f"device '{name}' requested but CUDA is not available")
    return torch.device(name)


def load_prepared(data_cfg: dict) -> Prepared:
    """Prepared tensors for a data config; kept in memory, since a sweep reuses them run after run
    (user files are keyed by their modification time too)."""
    files = [str(data_cfg[k]) for k in ("name", "test_path") if data_cfg.get(k) and Path(str(data_cfg[k])).is_file()]
    stamp = [Path(f).stat().st_mtime_ns for f in files]
    return _prepared(json.dumps({**data_cfg, "_stamp": stamp}, sort_keys=True, default=str))


@lru_cache(maxsize=8)
def _prepared(key: str) -> Prepared:
    cfg = json.loads(key)
    cfg.pop("_stamp")
    return prepare(load_raw(cfg), cfg["length"], cfg["val_fraction"], cfg["split_seed"])


# -- run directories ---------------------------------------------------------------------------

def _open_run_dir(out: str | Path, resume: bool) -> Path:
    path = Path(out).resolve()  # stored absolute: the run is readable from any working directory
    if (path / RUN_FILE).exists():
        raise EarlykdError(f"{path} already holds a finished run; choose another --out")
    if (path / STATE_FILE).exists() and not resume:
        raise EarlykdError(f"{path} holds an unfinished run; pass --resume to continue it or choose another --out")
    return writable_dir(path)


def _default_out(cfg: dict, kind: str) -> Path:
    data = Path(str(cfg["data"]["name"])).stem
    arch, seed = cfg["model"]["arch"], cfg["train"]["seed"]
    if kind == "teacher":
        return Path("runs") / f"teacher-{data}-{arch}-s{seed}"
    e, mode = cfg["prefix"]["earliness"], cfg["prefix"]["mode"]
    return Path("runs") / f"{cfg['method']['name']}-{data}-{arch}-e{e}-{mode}-s{seed}"


def _file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def read_run(path: str | Path) -> tuple[dict, dict]:
    """-> (resolved config, run record) of a finished run directory; the teacher and data paths in the
    config point at files that exist where they can be found (see earlykd.paths)."""
    from .paths import locate
    path = Path(path)
    check(path.is_dir(), f"run directory not found: {path}")
    check((path / RUN_FILE).is_file(), f"{path}: not a finished earlykd run (no {RUN_FILE})")
    try:
        record = json.loads((path / RUN_FILE).read_text())
        cfg = yaml.safe_load((path / "config.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise EarlykdError(f"{path}: unreadable run record ({exc})") from None
    return locate(cfg, path), record


# -- teacher outputs cache ----------------------------------------------------------------------

def teacher_outputs(teacher_dir: Path, data: Prepared, device: torch.device) -> dict[str, TeacherOutputs]:
    """Teacher logits, features and hidden sequences on the full series of every split,
    computed once per (teacher checkpoint, data) and cached in the teacher's run directory."""
    key = f"{_file_digest(teacher_dir / MODEL_FILE)}-{data.fingerprint()}"
    cache = teacher_dir / f"teacher_outputs-{key}.safetensors"
    if cache.is_file():
        tensors, _ = load_tensors(cache)
    else:
        model, _, _ = load_model(teacher_dir / MODEL_FILE)
        model = model.to(device)
        tensors = {}
        with torch.no_grad():
            for split in ("train", "val", "test"):
                x = data.split(split)[0]
                outs = [model(x[i:i + 256].to(device)) for i in range(0, len(x), 256)] if len(x) else []
                for field in ("logits", "feature", "hidden"):
                    parts = [getattr(o, field).cpu() for o in outs]
                    tensors[f"{split}.{field}"] = torch.cat(parts) if parts else torch.zeros(0)
        try:
            save_tensors(cache, tensors, {"teacher": str(teacher_dir), "data": data.fingerprint()})
        except OSError:
            pass  # a read-only teacher directory only costs recomputation
    return {s: TeacherOutputs(tensors[f"{s}.logits"], tensors[f"{s}.feature"], tensors[f"{s}.hidden"])
            for s in ("train", "val", "test")}


# -- training -----------------------------------------------------------------------------------

def _train_defaults(cfg: dict, kind: str, method_cls) -> dict:
    t = dict(cfg["train"])
    if t["select"] is None:
        t["select"] = "acc_loss" if kind == "teacher" else "loss"
    if t["min_epochs"] is None:
        t["min_epochs"] = t["epochs"] // 4 if kind == "teacher" else 0
    if t["warmup"] is None:
        t["warmup"] = t["epochs"] // 2 if method_cls.two_stage else 0
    return t


def _fit_and_save(cfg: dict, kind: str, data: Prepared, splits: dict[str, Split], teacher_info: dict | None,
                  out: Path, resume: bool) -> Run:
    from . import threads
    from .report.model_card import model_card
    device = resolve_device(cfg["train"]["device"])
    threads.apply(cfg["train"].get("threads"))
    method_cls = method_class(cfg["method"]["name"])
    train_cfg = _train_defaults(cfg, kind, method_cls)
    cfg = {**cfg, "train": train_cfg}
    torch.manual_seed(train_cfg["seed"])
    m = cfg["model"]
    student = build_model(m["arch"], splits["train"].x.shape[1], data.n_classes, m["layers"], m["hidden"])
    m = {"arch": m["arch"], "layers": student.layers, "hidden": student.width}  # saved resolved
    cfg = {**cfg, "model": m}
    dims = splits["train"].teacher.dims if splits["train"].teacher is not None else None
    distiller = build_method(method_cls.name, student, dims, cfg["method"]["options"], train_cfg["warmup"])
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    trainer = Trainer(distiller, train_cfg, device, out / STATE_FILE,
                      desc=f"{kind} {data.name} {m['arch']}" + (f" {method_cls.name} e={cfg['prefix']['earliness']}"
                                                                if kind == "student" else ""))
    if resume and (out / STATE_FILE).exists():
        trainer.load_state(out / STATE_FILE)
    started = time.perf_counter()
    fit = trainer.fit(splits["train"], splits["val"])
    student = distiller.student.cpu().eval()
    meta = {"kind": kind, "classes": data.classes, "length": data.length, "reference_length": data.reference_length,
            "equal_length": data.equal_length, "prefix": cfg["prefix"], "data_fingerprint": data.fingerprint()}
    save_model(out / MODEL_FILE, student, meta, {"data.mean": data.mean, "data.std": data.std})
    test = evaluate_split(student, splits["test"], teacher_info)
    record = {
        "kind": kind, "status": "finished", "dataset": data.name, "method": method_cls.name,
        "earliness": cfg["prefix"]["earliness"], "prefix_mode": cfg["prefix"]["mode"], "seed": train_cfg["seed"],
        "student_arch": m["arch"], "teacher_arch": (teacher_info or {}).get("arch", m["arch"]),
        "teacher_id": (teacher_info or {}).get("id"), "version": __version__,
        "config_hash": config_hash({**cfg, "teacher": (teacher_info or {}).get("id")}),  # not the teacher's path
        "versions": versions(), "device": str(device), "threads": torch.get_num_threads(),
        "data": data.info, "warmup": distiller.warmup, "best_epoch": fit.best_epoch, "epochs": fit.epochs_run,
        "train_seconds": round(fit.train_seconds, 3), "seconds_per_epoch": round(fit.seconds_per_epoch, 4),
        "wall_seconds": round(time.perf_counter() - started, 3), "peak_memory_mb": round(fit.peak_memory_mb, 1),
        "val": fit.history[fit.best_epoch] if fit.best_epoch is not None and fit.history else {},
        "val_metrics": evaluate_split(student, splits["val"], None) if len(splits["val"]) else {},
        "test": test, "history": fit.history,
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


def train_teacher(cfg: dict, resume: bool = False) -> Run:
    """Train on full series; the checkpoint is selected on validation (accuracy, then loss)."""
    check(cfg["teacher"] is None, "a teacher run takes no 'teacher' setting")
    check(cfg["method"]["name"] == "base", "a teacher is trained with method 'base'")
    model = {**cfg["model"], "arch": cfg["model"]["arch"] or "lstm"}
    cfg = {**cfg, "model": model, "prefix": {"earliness": 1.0, "mode": cfg["prefix"]["mode"], "channels": None}}
    build_model(cfg["model"]["arch"], 1, 2, cfg["model"]["layers"], cfg["model"]["hidden"])  # fail fast
    data = load_prepared(cfg["data"])
    out = _open_run_dir(cfg["out"] or _default_out(cfg, "teacher"), resume)
    splits = {s: Split(*data.split(s)) for s in ("train", "val", "test")}
    cfg = {**cfg, "out": str(out)}
    return _fit_and_save(cfg, "teacher", data, splits, None, out, resume)


def distill(cfg: dict, resume: bool = False) -> Run:
    """Train a student on prefixes with the method in cfg['method'], from the teacher run cfg['teacher']."""
    check(cfg["teacher"] is not None, "distillation needs a teacher run directory (--teacher RUN_DIR)")
    teacher_dir = Path(cfg["teacher"])
    t_cfg, t_record = read_run(teacher_dir)
    check(t_record.get("kind") == "teacher", f"{teacher_dir}: is a {t_record.get('kind')} run, not a teacher")
    method_cls = method_class(cfg["method"]["name"])
    method_cls.resolve_options(cfg["method"]["options"])
    model = cfg["model"]
    if model["arch"] is None:  # the teacher's architecture, with any explicit size kept
        model = {k: t_cfg["model"][k] if v is None else v for k, v in model.items()}
    cfg = {**cfg, "data": t_cfg["data"], "model": model}
    build_model(cfg["model"]["arch"], 1, 2, cfg["model"]["layers"], cfg["model"]["hidden"])  # fail fast
    data = load_prepared(cfg["data"])
    _, t_meta, _ = load_model(teacher_dir / MODEL_FILE)
    check(t_meta.get("data_fingerprint") == data.fingerprint(),
          f"{teacher_dir}: the teacher was trained on different data than {cfg['data']['name']} now gives")
    prefix_steps(cfg["prefix"]["earliness"], data.info["length"])
    out = _open_run_dir(cfg["out"] or _default_out(cfg, "student"), resume)
    device = resolve_device(cfg["train"]["device"])
    outputs = teacher_outputs(teacher_dir, data, device)  # test logits serve fidelity for every method
    splits = {s: Split(data.view(s, **cfg["prefix"]), data.labels[s],
                       outputs[s] if method_cls.needs_teacher else None) for s in ("train", "val", "test")}
    info = {"arch": t_meta["model"]["arch"], "id": f"{t_record['config_hash']}-{_file_digest(teacher_dir / MODEL_FILE)[:8]}",
            "test_logits": outputs["test"].logits, "path": str(teacher_dir.resolve()), "record": t_record}
    cfg = {**cfg, "out": str(out), "teacher": str(teacher_dir)}
    return _fit_and_save(cfg, "student", data, splits, info, out, resume)


# -- evaluation and prediction --------------------------------------------------------------------

def evaluate_run(run_dir: str | Path, device: str = "auto", test_path: str | Path | None = None,
                 label_column="run") -> dict:
    """Recompute the test metrics of a finished run from its checkpoint; writes metrics.json.
    With `test_path`, score the labelled series of that file instead, and write nothing."""
    if test_path is not None:
        from .evaluate.new_data import evaluate_file
        return evaluate_file(run_dir, test_path, label_column, device)
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    cfg, record = read_run(run_dir)
    model, meta, _ = load_model(run_dir / MODEL_FILE)
    data = load_prepared(cfg["data"])
    split = Split(data.view("test", **cfg["prefix"]).to(dev), data.y_test)
    model = model.to(dev)
    info = None
    if record["kind"] == "student":
        outputs = teacher_outputs(Path(cfg["teacher"]), data, dev)
        info = {"test_logits": outputs["test"].logits}
    metrics = evaluate_split(model, split, info)
    write_json(run_dir / METRICS_FILE, metrics)
    return metrics


def predict(run_dir: str | Path, series: list[np.ndarray], full: bool = False, what: str = "input",
            device: str = "auto") -> tuple[list[str], np.ndarray, dict]:
    """Class labels and probabilities for new series, each row starting at the series' first sample.

    A row goes through the same view as in training: a student uses the first ceil(e * T) raw
    samples (T: the training series' length), so a whole series and its prefix give the same
    answer. `full=True` says the rows are whole series; without it, rows longer than the trained
    prefix get a warning, as do rows shorter than it (held at their last value, like a series
    that ended) and, for a teacher, rows shorter than a whole series. A student trained on a
    channel subset takes either all channels or just its subset.
    """
    from .data.prepare import clean_series
    run_dir = Path(run_dir)
    model, meta, tensors = load_model(run_dir / MODEL_FILE)
    check(meta.get("reference_length"), f"{run_dir}: trained before the prefix contract (no reference length); "
                                        "train it again with this version")
    mean, std = tensors["data.mean"], tensors["data.std"]
    student = meta["kind"] == "student"
    prefix = meta["prefix"] if student else {"earliness": 1.0, "mode": "stretch", "channels": None}
    subset, total = prefix["channels"], meta["reference_length"]
    accepted = [mean.numel()] + ([len(subset)] if subset and len(subset) != mean.numel() else [])
    check(len(series) > 0, f"{what}: no series")
    rows = []
    for i, s in enumerate(series):
        s = np.atleast_2d(s)
        check(s.shape[0] in accepted, f"{what}: row {i + 1}: {s.shape[0]} channel(s), the model expects "
                                      + " or ".join(map(str, accepted)))
        rows.append(clean_series(s, f"{what}: row {i + 1}"))
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
    out = []
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
