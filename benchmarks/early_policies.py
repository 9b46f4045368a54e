"""Stopping policies on the same anytime students: threshold, calibrated and the learned halting head (elects).

Each policy is calibrated on the student's validation outputs only and scored on the test split (HM,
accuracy, earliness), plus `chosen`: per run, the policy of highest validation HM. Students come from
`--students DIR` (default: the `uniform` arm of benchmarks/aria_vs_uniform.py, DIR/<dataset>/uniform-s<seed>,
read only); a missing one is trained here (FCN-128 teacher, FCN-64 KD anytime student, `--epochs`).

    python benchmarks/early_policies.py [OUT] [--students DIR] [--seeds 0,1,2] [--epochs 40]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from earlykd import api, runs
from earlykd.decide import POLICIES, build_policy
from earlykd.early.anytime import LevelSplit
from earlykd.early.run import load_decider, train_early

DATASETS = ("GunPoint", "ItalyPowerDemand", "ArrowHead")
TEACHER = {"arch": "fcn", "layers": 3, "hidden": 128, "select": "acc_loss", "batch_size": 16}
STUDENT = {"arch": "fcn", "layers": 3, "hidden": 64, "mode": "truncate", "batch_size": 16}


def student(students: Path, out: Path, name: str, seed: int, epochs: int) -> tuple[Path, str]:
    """An anytime KD student: the stored one if there is one, else trained here with `epochs`."""
    stored = students / name / f"uniform-s{seed}"
    if (stored / "run.json").is_file() and runs.read_run(stored)[1].get("status") == "finished":
        return stored, "stored"
    run_dir, t_dir = out / "runs" / name / f"kd-s{seed}", out / "runs" / name / "teacher"
    if not (run_dir / "run.json").is_file():
        if not (t_dir / "run.json").is_file():
            api.train_teacher(data=name, out=str(t_dir), seed=0, epochs=2 * epochs, threads=1, progress=False,
                              **TEACHER)
        cfg = api.make_config(teacher=str(t_dir), method="kd", seed=seed, out=str(run_dir), epochs=epochs,
                              threads=1, progress=False, **STUDENT)
        train_early(cfg, None, ["threshold"])
    return run_dir, f"trained here, {epochs} epochs"


def evaluate(run_dir: Path) -> dict:
    """Each registered policy calibrated on validation, scored on test; seconds to calibrate."""
    cfg, record = runs.read_run(run_dir)
    data = runs.load_prepared(cfg["data"])
    decider = load_decider(run_dir, "threshold")
    splits = {s: LevelSplit.of(data, s, decider.levels, decider.mode, decider.channels).outputs(decider.student)
              for s in ("val", "test")}
    y = {s: data.labels[s].numpy() for s in splits}
    out = {"epochs": record["epochs"], "best_epoch": record["best_epoch"], "n_val": len(y["val"]),
           "n_test": len(y["test"]), "checkpoints": len(decider.levels), "policies": {}}
    for name in POLICIES:
        started = time.perf_counter()
        policy = build_policy(name).calibrate(splits["val"][0], y["val"], decider.earliness, splits["val"][1])
        seconds = time.perf_counter() - started
        test = dict(zip(("hm", "accuracy", "earliness"),
                        policy.score(splits["test"][0], y["test"], decider.earliness, splits["test"][1])))
        settings = {k: v for k, v in policy.params.items() if k not in ("weight", "center", "scale", "temperatures")}
        out["policies"][name] = {"val": policy.validation, "test": test, "calibrate_seconds": round(seconds, 3),
                                 "settings": settings}
    best = max(POLICIES, key=lambda p: (out["policies"][p]["val"]["hm"], out["policies"][p]["val"]["accuracy"]))
    out["policies"]["chosen"] = {**out["policies"][best], "settings": {"policy": best}}
    return out


def report(results: dict) -> str:
    names = [*POLICIES, "chosen"]
    lines = ["| dataset | " + " | ".join(f"{p} HM" for p in names) + " |", "|---|" + "---|" * len(names)]
    detail = ["| dataset | policy | test HM | accuracy | earliness | val HM (as calibrated) |", "|---|---|---|---|---|---|"]
    overall = {p: [] for p in names}
    for dataset in DATASETS:
        rows = [r for k, r in results["runs"].items() if k.startswith(dataset + "/")]
        if not rows:
            continue
        cells = []
        for p in names:
            m = {k: np.array([r["policies"][p]["test"][k] for r in rows]) for k in ("hm", "accuracy", "earliness")}
            val = np.mean([r["policies"][p]["val"]["hm"] for r in rows])
            overall[p].extend(m["hm"])
            cells.append(f"{m['hm'].mean():.3f} ± {m['hm'].std():.3f}")
            detail.append(f"| {dataset} | {p} | {m['hm'].mean():.3f} | {m['accuracy'].mean():.3f} | "
                          f"{m['earliness'].mean():.3f} | {val:.3f} |")
        lines.append(f"| {dataset} ({len(rows)} seeds) | " + " | ".join(cells) + " |")
    lines.append("| mean over runs | " + " | ".join(f"{np.mean(overall[p]):.3f}" for p in names) + " |")
    return "\n".join(lines) + "\n\n" + "\n".join(detail) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default="benchmarks/results/early_policies")
    p.add_argument("--students", default="benchmarks/results/aria/runs")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=40, help="epochs of a student trained here (none stored)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"settings": {"policies": list(POLICIES), "students": a.students, "threads": 1,
                            "torch": torch.__version__}, "runs": {}}
    started = time.perf_counter()
    for name in DATASETS:
        for seed in (int(s) for s in a.seeds.split(",")):
            run_dir, source = student(Path(a.students), out, name, seed, a.epochs)
            row = {"run": str(run_dir), "student": source, **evaluate(run_dir)}
            results["runs"][f"{name}/s{seed}"] = row
            print(f"{name} s{seed}: " + ", ".join(f"{k} {v['test']['hm']:.3f}" for k, v in row["policies"].items()),
                  flush=True)
    results["settings"]["seconds"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "table.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
