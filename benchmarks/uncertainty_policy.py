"""Uncertainty that drives the decision (issue 11 §4): anytime students distilled from the quick suite's
5-member FCN-128 ensembles, every registered stopping policy calibrated on validation, test HM.

The `uncertainty` policy waits on DLF's mutual information for dlf students and on the entropy of the
probabilities for kd students, so the two compare "uncertainty from the distilled ensemble" with "confidence
of one student" on the same teachers, data and levels. DLF runs as specified (`dlf`) and as the shared-suffix
model (`dlf-contrast`, docs/dlf.md). `chosen` is, per student, the policy of highest validation HM; `best
student` is, per dataset and seed, the student and policy of highest validation HM. Test scores choose nothing.

    python benchmarks/uncertainty_policy.py [OUT] [--datasets ...] [--seeds 0,1,2] [--epochs 300]

Students: FCN-64 (3 layers), truncate, 20 levels 0.05..1.0, batch 16, one thread; teachers: the quick suite's
ensembles as linked by benchmarks/uncertainty.py into benchmarks/results/uncertainty/runs. Resumable: a finished
student is read back, an interrupted one resumes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
TEACHERS = ROOT / "benchmarks" / "results" / "uncertainty" / "runs"
DATASETS = ("GunPoint", "ItalyPowerDemand", "ArrowHead", "OSULeaf", "JapaneseVowels", "ACSF1")
STUDENTS = {"kd": ("kd", {}), "dlf": ("dlf", {}), "dlf-contrast": ("dlf", {"contrast": 1})}
STUDENT = {"arch": "fcn", "layers": 3, "hidden": 64, "mode": "truncate"}


def teacher_dir(dataset: str) -> Path:
    found = sorted(TEACHERS.glob(f"teacher-{dataset}-*"))
    if not found or not (found[0] / "run.json").exists():
        sys.exit(f"uncertainty_policy: no quick teacher for {dataset} in {TEACHERS} (run benchmarks/uncertainty.py)")
    return found[0]


def student(out: Path, dataset: str, name: str, seed: int, epochs: int) -> dict:
    from earlykd import api, runs
    from earlykd.decide import POLICIES
    from earlykd.early.run import train_early
    run_dir = out / "runs" / dataset / f"{name}-s{seed}"
    if not (run_dir / runs.RUN_FILE).is_file() or runs.read_run(run_dir)[1].get("status") != "finished":
        method, options = STUDENTS[name]
        cfg = api.make_config(teacher=str(teacher_dir(dataset)), method=method, options=options, out=str(run_dir),
                              epochs=epochs, seed=seed, threads=1, progress=False, batch_size=16, device="cpu",
                              **STUDENT)
        train_early(cfg, None, list(POLICIES), resume=runs.unfinished(run_dir))
    record = runs.read_run(run_dir)[1]
    policies = {p: {"test": record["test_policies"][p], "val": record["policies_val"][p]} for p in POLICIES}
    best = max(POLICIES, key=lambda p: (policies[p]["val"]["hm"], policies[p]["val"]["accuracy"]))
    policies["chosen"] = {**policies[best], "policy": best}
    return {"policies": policies, "wall_seconds": record["wall_seconds"], "epochs": record["epochs"]}


def table(results: dict, datasets) -> str:
    from earlykd.decide import POLICIES
    names = [*POLICIES, "chosen"]
    out = ["Test HM, mean over seeds. `uncertainty` waits on MI for dlf students, on entropy for kd.",
           "", "| dataset | student | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    best_rows = []
    for d in datasets:
        for s in STUDENTS:
            runs = [r for k, r in results.items() if k.startswith(f"{d}/{s}/")]
            if runs:
                out.append(f"| {d} ({len(runs)} seeds) | {s} | " + " | ".join(
                    f"{np.mean([r['policies'][p]['test']['hm'] for r in runs]):.3f}" for p in names) + " |")
        seeds = sorted({k.split("/")[2] for k in results if k.startswith(d + "/")})
        for seed in seeds:
            cands = [(s, p, results[f"{d}/{s}/{seed}"]["policies"][p]) for s in STUDENTS for p in POLICIES
                     if f"{d}/{s}/{seed}" in results]
            s, p, r = max(cands, key=lambda c: (c[2]["val"]["hm"], c[2]["val"]["accuracy"]))
            best_rows.append((d, seed, s, p, r["test"]["hm"]))
    out += ["", "Best student and policy per dataset and seed, by validation HM:", "",
            "| dataset | seed | student | policy | test HM |", "|---|---|---|---|---|"]
    out += [f"| {d} | {seed} | {s} | {p} | {hm:.3f} |" for d, seed, s, p, hm in best_rows]
    means = {}
    for p in names:
        for s in STUDENTS:
            vals = [r["policies"][p]["test"]["hm"] for k, r in results.items() if f"/{s}/" in k]
            if vals:
                means[(s, p)] = np.mean(vals)
    out += ["", "Mean test HM over every (dataset, seed):", "", "| student | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names)]
    out += [f"| {s} | " + " | ".join(f"{means[(s, p)]:.3f}" for p in names) + " |" for s in STUDENTS
            if (s, names[0]) in means]
    return "\n".join(out) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default=str(ROOT / "benchmarks" / "results" / "uncertainty_policy"))
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=300)
    a = p.parse_args(argv)
    out = Path(a.out)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    datasets = a.datasets.split(",")
    for d in datasets:
        for seed in (int(s) for s in a.seeds.split(",")):
            for name in STUDENTS:
                key = f"{d}/{name}/{seed}"
                if key not in results:
                    results[key] = student(out, d, name, seed, a.epochs)
                    out.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(results, indent=1))
                    print(f"{key}: chosen {results[key]['policies']['chosen']['policy']}, "
                          f"test HM {results[key]['policies']['chosen']['test']['hm']:.3f}", flush=True)
    (out / "table.md").write_text(table(results, datasets))
    print(f"written {out / 'table.md'}")


if __name__ == "__main__":
    main()
