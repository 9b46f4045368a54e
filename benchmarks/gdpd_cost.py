"""Training cost of GDPD (and GDPD + KD) against Base-KD per epoch, over whole two-stage runs.

Two regimes, as the suites run them (batch 16, warm-up = half the epochs, a validation pass per epoch,
checkpoints every 10 epochs):
- quick: FCN-128 teacher -> FCN-64 student, truncated prefixes, the quick suite's six datasets, e 0.2-0.8;
- paper: LSTM3-100 student, stretched prefixes, GunPoint and ArrowHead, e 0.2 / 0.4 (paper-cpu's cells).
The teacher is an FCN-128 at its random initialisation: its outputs are cached before training, so its
quality does not change the students' cost. Methods run alternately within each repeat (the order rotates),
so load drift hits them alike; each run's cost is its own seconds per epoch, the whole run divided by its
epochs. Reported: the median over cells and repeats of the per-pair ratio to Base-KD, and the ratio of
summed seconds (as a sweep's totals give it), both in CPU seconds of the training thread (robust on a
shared machine) and in wall seconds.

Usage: python benchmarks/gdpd_cost.py [--regimes quick,paper] [--epochs 20] [--repeats 3] [--datasets A,B]
                                     [--out DIR] [--summarise] [--gdpd-options freeze_prior=1] [--device cuda]
On a GPU (--device cuda) the wall seconds are the measure: the CPU seconds then count only the host's share.
Writes DIR/{results.json,summary.md} (default benchmarks/results/gdpd_cost).
"""
import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from earlykd.config import DEFAULTS
from earlykd.distill import TeacherOutputs, build_method
from earlykd.models import build_model
from earlykd.rundir import load_prepared
from earlykd.train import Split, Trainer

ROOT = Path(__file__).resolve().parents[1]
FCN_128 = ("fcn", 3, 128)
REGIMES = {
    "quick": {"student": ("fcn", 3, 64), "mode": "truncate",
              "datasets": ("GunPoint", "ArrowHead", "ItalyPowerDemand", "OSULeaf", "JapaneseVowels", "ACSF1"),
              "earliness": (0.2, 0.4, 0.6, 0.8)},
    "paper": {"student": ("lstm", 3, 100), "mode": "stretch", "datasets": ("GunPoint", "ArrowHead"),
              "earliness": (0.2, 0.4)},
}
METHODS = ("kd", "gdpd", "gdpd_kd")


def cell(dataset: str, earliness: float, mode: str) -> tuple:
    data = load_prepared({**DEFAULTS["data"], "name": dataset})
    torch.manual_seed(0)
    arch, layers, hidden = FCN_128
    teacher = build_model(arch, data.channels, data.n_classes, layers, hidden).eval()
    splits = {}
    for s in ("train", "val"):
        with torch.no_grad():
            out = teacher(data.view(s))
        cache = TeacherOutputs(out.logits, out.feature, out.hidden)
        splits[s] = Split(data.view(s, earliness, mode), data.labels[s], cache)
    return data, splits


def run(method: str, data, splits, student: tuple, epochs: int, options: dict | None = None,
        device: str = "cpu") -> tuple[float, float]:
    """(CPU seconds, wall seconds) per epoch of one training run, checkpoints included."""
    arch, layers, hidden = student
    torch.manual_seed(0)
    model = build_model(arch, splits["train"].x.shape[1], data.n_classes, layers, hidden)
    distiller = build_method(method, model, splits["train"].teacher.dims, options or {}, epochs // 2)
    cfg = {**DEFAULTS["train"], "epochs": epochs, "batch_size": 16, "select": "loss", "min_epochs": 0,
           "progress": False}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(distiller, cfg, torch.device(device), Path(tmp) / "state.safetensors")
        cpu = time.thread_time()
        fit = trainer.fit(splits["train"], splits["val"])
        cpu = time.thread_time() - cpu
    return cpu / fit.epochs_run, fit.seconds_per_epoch


def ratios(rows: list[dict], method: str, clock: str) -> dict:
    pairs = [(r[method][clock], r["kd"][clock]) for r in rows]
    return {"median": statistics.median(m / k for m, k in pairs),
            "sum": sum(m for m, _ in pairs) / sum(k for _, k in pairs),
            "min": min(m / k for m, k in pairs), "max": max(m / k for m, k in pairs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--regimes", default="quick,paper")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda: the students train there")
    ap.add_argument("--datasets", default=None, help="comma list: only these of each regime's datasets")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gdpd_cost"))
    ap.add_argument("--summarise", action="store_true", help="only rewrite summary.md from OUT/results.json")
    ap.add_argument("--gdpd-options", default="", help="k=v,... options of the gdpd and gdpd_kd runs, e.g. "
                    "freeze_prior=1 (a variant's cost)")
    a = ap.parse_args()
    gdpd_options = {k: float(v) for k, v in (item.split("=") for item in a.gdpd_options.split(",") if item)}
    if a.summarise:
        write_summary(Path(a.out))
        return
    torch.set_num_threads(a.threads)
    load = [os.getloadavg()]
    started = time.time()
    results = {}
    for name in a.regimes.split(","):
        regime = REGIMES[name]
        warm = cell(regime["datasets"][0], regime["earliness"][0], regime["mode"])
        for method in METHODS:  # untimed: first-call costs out of the way
            run(method, *warm, regime["student"], 2, device=a.device)
        rows = []
        for dataset in [d for d in regime["datasets"] if a.datasets is None or d in a.datasets.split(",")]:
            for e in regime["earliness"]:
                data, splits = cell(dataset, e, regime["mode"])
                for rep in range(a.repeats):
                    order = METHODS[rep % 3:] + METHODS[:rep % 3]
                    row = {"dataset": dataset, "earliness": e, "repeat": rep}
                    for method in order:
                        cpu, wall = run(method, data, splits, regime["student"], a.epochs,
                                        gdpd_options if method != "kd" else None, a.device)
                        row[method] = {"cpu": cpu, "wall": wall}
                    rows.append(row)
                    print(name, dataset, e, rep, {m: round(row[m]["cpu"] / row["kd"]["cpu"], 3) for m in METHODS[1:]},
                          flush=True)
                load.append(os.getloadavg())
        results[name] = {"rows": rows, "ratios": {m: {c: ratios(rows, m, c) for c in ("cpu", "wall")}
                                                  for m in METHODS[1:]}}
        print(name, json.dumps(results[name]["ratios"]), flush=True)
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    meta = {"epochs": a.epochs, "warmup": a.epochs // 2, "gdpd_options": gdpd_options, "repeats": a.repeats, "threads": a.threads,
            "batch_size": 16, "torch": torch.__version__, "python": platform.python_version(),
            "cpu": cpu_model, "cores": os.cpu_count(),
            "device": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu",
            "minutes": round((time.time() - started) / 60, 1),
            "load_average_1min": {"min": min(x[0] for x in load), "max": max(x[0] for x in load),
                                  "median": statistics.median(x[0] for x in load)}}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    write_summary(out)


def write_summary(out: Path) -> None:
    """summary.md from results.json."""
    saved = json.loads((out / "results.json").read_text())
    meta, results = saved["meta"], saved["results"]
    load = meta["load_average_1min"]
    lines = ["# GDPD training cost against Base-KD, per epoch over whole two-stage runs", "",
             (f"{meta['cpu']}, {meta['cores']} cores"
              + (f", students on {meta['device']}" if meta.get("device", "cpu") != "cpu" else "") + ","
              f" torch {meta['torch']}, {meta['threads']} torch thread(s); "
              f"{meta['epochs']} epochs (warm-up {meta['warmup']}), batch 16, {meta['repeats']} alternating repeats "
              f"per cell; 1-min load average {load['min']:.1f}-{load['max']:.1f} (median {load['median']:.1f}) "
              f"over {meta['minutes']} min."
              + (f" gdpd and gdpd_kd options: {meta['gdpd_options']}." if meta.get("gdpd_options") else "")), "",
             ("| regime | method | median ratio, CPU s | summed ratio, CPU s | median ratio, wall s "
              "| summed ratio, wall s | range of pair ratios (CPU) |"),
             "|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        for m in METHODS[1:]:
            c, w = res["ratios"][m]["cpu"], res["ratios"][m]["wall"]
            lines.append(f"| {name} | {m} | {c['median']:.2f} | {c['sum']:.2f} | {w['median']:.2f} | {w['sum']:.2f} | "
                         f"{c['min']:.2f}-{c['max']:.2f} |")
    clock = "cpu" if meta.get("device", "cpu") == "cpu" else "wall"   # on a GPU the host's CPU time is a part
    lines += ["", f"Per cell (medians over repeats; {clock.replace('cpu', 'CPU')} seconds):", "",
              "| regime | dataset | e | Base-KD s/epoch | gdpd / kd | gdpd_kd / kd |", "|---|---|---|---|---|---|"]
    for name, res in results.items():
        cells: dict = {}
        for r in res["rows"]:
            cells.setdefault((r["dataset"], r["earliness"]), []).append(r)
        for (dataset, e), rs in cells.items():
            kd = statistics.median(r["kd"][clock] for r in rs)
            g, gk = (statistics.median(r[m][clock] / r["kd"][clock] for r in rs) for m in METHODS[1:])
            lines.append(f"| {name} | {dataset} | {e:g} | {kd:.4f} | {g:.2f} | {gk:.2f} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
