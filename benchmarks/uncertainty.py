"""Uncertainty benchmark (issue 11 §3): train with `earlykd bench`, score each method's predictive distribution.

    .venv/bin/python benchmarks/uncertainty.py [--suite benchmarks/suites/uncertainty.yaml] [--out DIR]
        [--workers 2] [--datasets ...] [--seeds ...] [--earliness ...] [--score-only]

Resumable at both stages: the sweep skips stored runs and resumes interrupted ones; each scored run is cached
in DIR/scores/<run>.json. The teachers are the quick suite's finished ensembles, linked file by file into
DIR/runs/teacher-* (their output caches are written there, never into the quick sweep). Writes DIR/runs.csv:
the protocol's columns plus brier, auroc_entropy, auroc_mi (misclassification detection, sklearn) and
ms_per_prediction (one series at a time, one thread; the ensemble's rows give the reference). The ensemble
is a row per dataset at earliness 1.0 (it sees whole series). kd has no second-order uncertainty: its
auroc_mi is empty. Summaries: benchmarks/uncertainty_report.py.

DLF runs in four variants (DLF_VARIANTS): as specified (`spec`, the suite's dlf), the shared-suffix model
(`contrast`), and each of them with the members' out-of-fold logits as design points (`oof`, `contrast-oof`;
docs/dlf.md), every variant but `spec` in its own sweep in DIR/variants/<name>. Per dataset, earliness and seed
the `dlf` row is the variant of lowest validation NLL of its predictive (column `variant`); DIR/variants.csv
keeps every variant's row. Test scores play no part in the choice.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
QUICK_TEACHERS = ROOT / "benchmarks" / "results" / "quick" / "runs"
EXTRA = ["brier", "auroc_entropy", "auroc_mi", "ms_per_prediction", "val_nll", "variant", "run_dir"]
# logit draws of DLF's predictive: at 32, MI's ranking of cases is partly Monte Carlo noise (rank correlation with
# 4096 draws 0.94 on validation inputs); at 1024, 0.991 (summary.md, 2026-11-28 05:40)
DLF_SAMPLES = 1024
DLF_VARIANTS = {"spec": None, **{name: ROOT / "benchmarks" / "suites" / f"uncertainty-dlf-{name}.yaml"
                                  for name in ("contrast", "oof", "contrast-oof")}}


def link_teachers(out: Path, names: list[str]) -> None:
    """DIR/runs/<teacher> as a real directory of links to the quick teacher's files (not its caches)."""
    for name in names:
        source = QUICK_TEACHERS / name
        if not (source / "run.json").is_file():
            sys.exit(f"uncertainty: the quick teacher {source} is not finished (run `earlykd bench --suite quick`)")
        dest = out / "runs" / name
        dest.mkdir(parents=True, exist_ok=True)
        for child in source.iterdir():
            if not child.name.startswith("teacher_outputs-") and not (dest / child.name).exists():
                (dest / child.name).symlink_to(child.resolve())


def predictive(method: str, run_dir: Path, x: torch.Tensor):
    """(probs, entropy, mutual information or None) of a student run from its method's predictive."""
    from earlykd.distill import endd, hydra
    from earlykd.distill.dlf import predictive as dlf_predictive
    from earlykd.distill.dlf.gaussian import predictive_stats
    from earlykd.runs import MODEL_FILE
    from earlykd.train import load_model
    if method == "dlf":
        out = dlf_predictive(run_dir, x, DLF_SAMPLES, generator=torch.Generator().manual_seed(0))
    elif method == "hydra":
        out = hydra.predictive(run_dir, x)
    elif method == "endd":
        out = endd.predictive(run_dir, x)
    else:  # one categorical: entropy only
        model = load_model(run_dir / MODEL_FILE)[0]
        with torch.no_grad():
            out = predictive_stats(model(x).logits[None])
        return out[0], out[1], None
    return out.probs, out.entropy, out.mutual_info


def uncertainty_metrics(probs: np.ndarray, entropy: np.ndarray, mi: np.ndarray | None, y: np.ndarray,
                        teacher_probs: np.ndarray | None) -> dict:
    from sklearn.metrics import roc_auc_score
    from earlykd.evaluate import classification_metrics
    probs = probs / probs.sum(1, keepdims=True)
    out = classification_metrics(probs, y, teacher_probs)
    out["brier"] = float(((probs - np.eye(probs.shape[1])[y]) ** 2).sum(1).mean())
    wrong = probs.argmax(1) != y
    both = 0 < wrong.sum() < len(y)
    out["auroc_entropy"] = float(roc_auc_score(wrong, entropy)) if both else math.nan
    out["auroc_mi"] = float(roc_auc_score(wrong, mi)) if both and mi is not None else math.nan
    return out


def ms_per_prediction(fn, x: torch.Tensor, count: int = 16, repeats: int = 3) -> float:
    """Median wall time of one series at a time (one thread), in ms."""
    times = []
    for i in range(min(count, len(x))):
        fn(x[i:i + 1])  # warm
        best = min(_timed(fn, x[i:i + 1]) for _ in range(repeats))
        times.append(best)
    return float(np.median(times) * 1e3)


def _timed(fn, x) -> float:
    started = time.perf_counter()
    fn(x)
    return time.perf_counter() - started


def score_student(job, root: Path) -> dict | None:
    from earlykd.runs import RUN_FILE, Teacher, load_prepared, read_run
    run_dir = root / "runs" / job.name
    if not (run_dir / RUN_FILE).is_file():
        return None
    cfg, record = read_run(run_dir)
    data = load_prepared(cfg["data"])
    x = data.view("test", **cfg["prefix"])
    y = data.labels["test"].numpy()
    teacher = Teacher.load(cfg["teacher"]).outputs(data, torch.device("cpu"))["test"]
    probs, entropy, mi = predictive(job.method, run_dir, x)
    val_probs = predictive(job.method, run_dir, data.view("val", **cfg["prefix"]))[0].double()
    val_nll = torch.nn.functional.nll_loss(val_probs.clamp_min(1e-12).log(), data.labels["val"]).item()
    metrics = uncertainty_metrics(probs.double().numpy(), entropy.double().numpy(),
                                  None if mi is None else mi.double().numpy(), y,
                                  torch.softmax(teacher.logits.double(), 1).numpy())
    if job.method in ("dlf", "hydra", "endd"):
        from earlykd.distill import endd, hydra
        from earlykd.distill.dlf import load as dlf_load, predictive as dlf_predictive
        from earlykd.runs import MODEL_FILE
        from earlykd.train import load_model
        model = {"dlf": dlf_load, "hydra": hydra.load}.get(job.method, lambda p: load_model(p / MODEL_FILE)[0])(run_dir)
        fn = {"dlf": lambda v: dlf_predictive(model, v, DLF_SAMPLES), "hydra": lambda v: hydra.predictive(model, v),
              "endd": lambda v: endd.predictive(model, v)}[job.method]
    else:
        from earlykd.runs import MODEL_FILE
        from earlykd.train import load_model
        student = load_model(run_dir / MODEL_FILE)[0]
        fn = lambda v: torch.softmax(student(v).logits, 1)  # noqa: E731
    with torch.no_grad():
        metrics["ms_per_prediction"] = ms_per_prediction(fn, x)
    row = {"dataset": job.dataset, "method": job.method, "earliness": job.earliness, "prefix_mode": job.prefix_mode,
           "seed": job.seed, "teacher_arch": record["teacher_arch"], "student_arch": record["student_arch"],
           **metrics, "val_nll": val_nll, "run_dir": str(run_dir.relative_to(root))}
    if job.method == "dlf":
        row["dlf_samples"] = DLF_SAMPLES
    for key in ("epochs", "train_seconds", "seconds_per_epoch", "peak_memory_mb", "config_hash", "version"):
        row[key] = record.get(key)
    return row


def score_ensemble(job, root: Path) -> dict:
    """The teacher ensemble on whole test series: members' mean probabilities, entropy and MI over members."""
    from earlykd.distill.dlf.gaussian import predictive_stats
    from earlykd.runs import Teacher, load_prepared
    teacher = Teacher.load(root / "runs" / job.name)
    data = load_prepared(teacher.cfg["data"])
    x, y = data.view("test"), data.labels["test"].numpy()
    model = teacher.model()[0].eval()
    with torch.no_grad():
        members = model.forward_members(x)[1].transpose(0, 1)           # (M, N, c)
        probs, entropy, mi = predictive_stats(members.double())
        metrics = uncertainty_metrics(probs.numpy(), entropy.numpy(), mi.numpy(), y, None)
        metrics["ms_per_prediction"] = ms_per_prediction(lambda v: predictive_stats(model.forward_members(v)[1]
                                                                                     .transpose(0, 1)), x)
    r = teacher.record
    return {"dataset": job.dataset, "method": "ensemble", "earliness": 1.0, "prefix_mode": job.prefix_mode, "seed": 0,
            "teacher_arch": r["teacher_arch"], "student_arch": r["student_arch"], **metrics,
            "epochs": r.get("epochs"), "train_seconds": r.get("train_seconds"),
            "seconds_per_epoch": r.get("seconds_per_epoch"), "peak_memory_mb": r.get("peak_memory_mb"),
            "config_hash": r.get("config_hash"), "version": r.get("version"), "run_dir": f"runs/{job.name}"}


def cached(path: Path, make, stale=None):
    """The row stored at `path`, or `make()` stored there (also when `stale(row)` says the stored one is out of date)."""
    if path.is_file():
        row = json.loads(path.read_text())
        if stale is None or not stale(row):
            return row
    row = make()
    if row is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(row, indent=1))
    return row


def sweep_and_score(suite_path: str, out: Path, a, only: str | None = None) -> tuple[list[dict], int]:
    """Run one suite's sweep (unless --score-only) and score its finished runs; only: that method's jobs."""
    from earlykd.bench.grid import expand
    from earlykd.bench.suites import get_suite
    jobs = expand(get_suite(suite_path), a.datasets, None, a.earliness, a.seeds)
    link_teachers(out, [j.name for j in jobs if j.kind == "teacher"])
    if not a.score_only:
        cmd = [sys.executable, "-m", "earlykd.cli", "bench", "--suite", suite_path, "--out", str(out), "--workers",
               str(a.workers), "--threads", "1", "--no-progress"]
        for flag in ("datasets", "seeds", "earliness"):
            if getattr(a, flag):
                cmd += [f"--{flag}", *getattr(a, flag)]
        code = subprocess.call(cmd, cwd=ROOT)
        if code:
            print(f"uncertainty: the sweep of {suite_path} exited with {code}; scoring what finished", file=sys.stderr)
    rows, missing = [], 0
    for job in jobs:
        if only is not None and (job.kind == "teacher" or job.method != only):
            continue
        make = (lambda j=job: score_ensemble(j, out)) if job.kind == "teacher" else (lambda j=job: score_student(j, out))
        stale = job.kind != "teacher" and job.method == "dlf"   # scored with another number of draws
        row = cached(out / "scores" / f"{job.name}.json", make,
                     (lambda r: r.get("dlf_samples") != DLF_SAMPLES) if stale else None)
        missing += row is None
        rows += [row] if row is not None else []
    return rows, missing


def choose_dlf(variants: dict[str, list[dict]]) -> list[dict]:
    """Per (dataset, earliness, seed), the DLF variant of lowest validation NLL (ties: DLF_VARIANTS order)."""
    cells: dict[tuple, list[tuple[int, dict]]] = {}
    for rank, (name, rows) in enumerate(variants.items()):
        for r in rows:
            cells.setdefault((r["dataset"], r["earliness"], r["seed"]), []).append((rank, {**r, "variant": name}))
    return [min(found, key=lambda rr: (rr[1]["val_nll"], rr[0]))[1] for _, found in sorted(cells.items())]


def write_csv(path: Path, rows: list[dict]) -> None:
    from earlykd.schema import PROTOCOL
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, PROTOCOL + EXTRA, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default=str(ROOT / "benchmarks" / "suites" / "uncertainty.yaml"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "uncertainty"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--datasets", nargs="+")
    p.add_argument("--seeds", nargs="+")
    p.add_argument("--earliness", nargs="+")
    p.add_argument("--score-only", action="store_true", help="score the finished runs without training")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out).resolve()
    rows, missing = sweep_and_score(a.suite, out, a)
    variants = {"spec": [r for r in rows if r["method"] == "dlf"]}
    for name, suite in DLF_VARIANTS.items():
        if suite is not None and variants["spec"]:
            found, lost = sweep_and_score(str(suite), out / "variants" / name, a, only="dlf")
            variants[name] = [{**r, "run_dir": f"variants/{name}/{r['run_dir']}"} for r in found]
            missing += lost
    if variants["spec"]:
        write_csv(out / "variants.csv", [{**r, "variant": n} for n, found in variants.items() for r in found])
        rows = [r for r in rows if r["method"] != "dlf"] + choose_dlf(variants)
    write_csv(out / "runs.csv", rows)
    print(f"{len(rows)} rows -> {out / 'runs.csv'}" + (f" ({missing} runs not finished)" if missing else ""))


if __name__ == "__main__":
    main()
