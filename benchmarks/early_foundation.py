"""Anytime student against per-earliness students, and the HM of the stopping policies.

For each dataset: one FCN teacher on whole series; per-earliness students at e = 0.2 ... 1.0 and
one anytime student (20 levels, 0.05 ... 1.0, one drawn per batch), each with the same method,
architecture, epochs and seed; test AUC-PRC at each e; the test HM, accuracy and earliness of
each policy calibrated on validation; decision latency of the anytime student per new time step.

    python benchmarks/early_foundation.py [OUT]   (default benchmarks/results/early_foundation)
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from early_latency import measure  # noqa: E402

from earlykd import api  # noqa: E402
from earlykd.early.run import train_early  # noqa: E402

DATASETS = ("GunPoint", "ItalyPowerDemand")
METHODS = ("base", "kd")
EARLINESS = (0.2, 0.4, 0.6, 0.8, 1.0)
POLICIES = ["threshold", "calibrated"]
MODEL = {"arch": "fcn", "layers": 3, "hidden": 32}
ANYTIME_EPOCHS = (100, 500)  # as many epochs as one per-earliness student; as many as all five together
TRAIN = {"epochs": 100, "batch_size": 16, "seed": 0, "threads": 1, "progress": False, "mode": "truncate"}


def run(out: Path) -> dict:
    torch.set_num_threads(1)
    results = {"settings": {"model": MODEL, **TRAIN, "teacher_epochs": TRAIN["epochs"], "levels": "0.05..1.0 (20)",
                            "device": "cpu", "seeds": [0]}, "datasets": {}}
    for name in DATASETS:
        started = time.perf_counter()
        teacher = api.train_teacher(data=name, out=str(out / "runs" / name / "teacher"), **MODEL,
                                    **{k: v for k, v in TRAIN.items() if k != "mode"})
        row = {"teacher_auc_prc": teacher.metrics["auc_prc"], "methods": {}}
        for method in METHODS:
            per_e = {}
            for e in EARLINESS:
                student = api.distill(teacher, method=method, earliness=e, out=str(out / "runs" / name / f"{method}-e{e}"),
                                      **TRAIN)
                per_e[str(e)] = {"auc_prc": student.metrics["auc_prc"], "seconds": student.record["train_seconds"]}
            row["methods"][method] = {"per_earliness": per_e, "anytime": {}}
            for epochs in ANYTIME_EPOCHS:
                cfg = api.make_config(teacher=str(teacher.path), method=method,
                                      out=str(out / "runs" / name / f"{method}-anytime-{epochs}"),
                                      **MODEL, **{**TRAIN, "epochs": epochs})
                anytime = train_early(cfg, None, POLICIES)
                row["methods"][method]["anytime"][str(epochs)] = {
                    "auc_prc": {str(e): anytime.record["test_levels"][str(e)]["auc_prc"] for e in EARLINESS},
                    "seconds": anytime.record["train_seconds"], "best_epoch": anytime.record["best_epoch"],
                    "policies": anytime.record["test_policies"], "policies_val": anytime.record["policies_val"],
                    "latency": measure(str(anytime.path)),
                }
        row["wall_seconds"] = round(time.perf_counter() - started, 1)
        results["datasets"][name] = row
    return results


def summary(results: dict) -> str:
    s = results["settings"]
    lines = ["# Early foundation: one anytime student against per-earliness students", "",
             f"Settings: FCN teacher and students (3 layers, width {s['model']['hidden']}), batch {s['batch_size']}, "
             f"prefix mode {s['mode']}, seed 0 only (one seed: differences of a few points are within seed noise), "
             f"CPU, 1 thread. Teacher and per-earliness students: {s['epochs']} epochs. Anytime student: 20 "
             "earliness levels 0.05 ... 1.0, one drawn per mini-batch, selected by validation loss averaged over "
             f"levels, trained for {ANYTIME_EPOCHS[0]} epochs (as many as one per-earliness student) and for "
             f"{ANYTIME_EPOCHS[1]} (as many as the five per-earliness students together). Policies are calibrated "
             "on the validation split only (20 % of train, stratified); every number below is on the test split.",
             "", "## Test AUC-PRC: per-earliness student / anytime 100 epochs / anytime 500 epochs", ""]
    head = "| dataset | method | " + " | ".join(f"e={e}" for e in EARLINESS) + " | mean difference (100 / 500) |"
    lines += [head, "|" + "---|" * (len(EARLINESS) + 3)]
    for name, row in results["datasets"].items():
        for method, m in row["methods"].items():
            cells, diffs = [], {k: [] for k in m["anytime"]}
            for e in EARLINESS:
                per = m["per_earliness"][str(e)]["auc_prc"]
                any_ = {k: a["auc_prc"][str(e)] for k, a in m["anytime"].items()}
                cells.append(f"{per:.3f} / " + " / ".join(f"{v:.3f}" for v in any_.values()))
                for k, v in any_.items():
                    diffs[k].append(v - per)
            mean = " / ".join(f"{sum(d) / len(d):+.3f}" for d in diffs.values())
            lines.append(f"| {name} | {method} | " + " | ".join(cells) + f" | {mean} |")
    lines += ["", "Teacher on whole series (test AUC-PRC / accuracy): " + ", ".join(
        f"{n} {r['teacher_auc_prc']:.3f} / {_teacher_accuracy(n):.3f}" for n, r in results["datasets"].items())
        + ". Every student of a dataset distils the same teacher, trained with the code of the working tree at "
        "the time (teacher selection was being changed by another engineer), so comparisons within a dataset are "
        "like for like; Base students do not use the teacher.", "",
        "## Stopping policies on the anytime student (test HM, accuracy, earliness)", "",
        "| dataset | method | anytime epochs | policy | HM | accuracy | earliness | validation HM | chosen on validation |",
        "|---|---|---|---|---|---|---|---|---|"]
    for name, row in results["datasets"].items():
        for method, m in row["methods"].items():
            for epochs, a in m["anytime"].items():
                chosen = _chosen(name, method, epochs)
                for policy, p in a["policies"].items():
                    v = a["policies_val"][policy]
                    lines.append(f"| {name} | {method} | {epochs} | {policy} | {p['hm']:.3f} | {p['accuracy']:.3f} | "
                                 f"{p['earliness']:.3f} | {v['hm']:.3f} | {chosen[policy]} |")
    lines += ["", "## Cost", "", "| dataset | method | per-earliness students, s (5 runs) | anytime, s (100 / 500 "
              "epochs) | decision ms per new time step, mean / p99 / max | ms per checkpoint |", "|---|---|---|---|---|---|"]
    for name, row in results["datasets"].items():
        for method, m in row["methods"].items():
            lat = m["anytime"][str(ANYTIME_EPOCHS[-1])]["latency"]
            per = sum(v["seconds"] for v in m["per_earliness"].values())
            times = " / ".join(f"{a['seconds']:.1f}" for a in m["anytime"].values())
            lines.append(f"| {name} | {method} | {per:.1f} | {times} | {lat['mean_ms_per_step']:.2f} / "
                         f"{lat['p99_ms_per_step']:.2f} / {lat['max_ms_per_step']:.2f} | "
                         f"{lat['mean_ms_per_checkpoint']:.2f} |")
    lines += ["", "Latency (the 500-epoch anytime student): `benchmarks/early_latency.py`, 20 test series fed one "
              "sample at a time through `EarlyClassifier.update_predict` with a policy that never stops early "
              "(every checkpoint is paid), 1 torch thread, on a 2-core machine shared with a running benchmark sweep.",
              "", "Reproduce: `python benchmarks/early_foundation.py` (all numbers in results.json)."]
    return "\n".join(lines) + "\n"


def _teacher_accuracy(name: str) -> float:
    return json.loads((RUNS / name / "teacher" / "run.json").read_text())["test"]["accuracy"]


def _chosen(name: str, method: str, epochs: str) -> dict:
    stored = json.loads((RUNS / name / f"{method}-anytime-{epochs}" / "decide.json").read_text())
    out = {}
    for policy, spec in stored["policies"].items():
        p = spec["params"]
        out[policy] = f"p={p['probability']}, k={p['consecutive']}" if policy == "threshold" else f"target={p['target']}"
    return out


if __name__ == "__main__":
    OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/early_foundation")
    RUNS = OUT / "runs"
    res = run(OUT)
    (OUT / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    (OUT / "summary.md").write_text(summary(res))
    print(summary(res))
