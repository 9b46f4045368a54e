"""GDPD ablations on two quick-suite datasets (validation-selected checkpoints, test metrics).

Variants: the default; no prior (hint = projected student feature); joint instead of two-stage
training; J = 4 hint samples; per-feature alpha; stretch instead of truncate (with Base and
Base-KD in both modes for reference). Teachers and student settings are the quick suite's;
teachers are reused from benchmarks/results/quick when that sweep has run.

Usage: python benchmarks/gdpd_ablation.py [--workers 2] [--out DIR]
Writes DIR/{runs.csv,table.md} (default benchmarks/results/ablation).
"""
import argparse
import csv
import os
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "ablation"
DATASETS, EARLINESS, SEEDS = ("ArrowHead", "OSULeaf"), (0.2, 0.4), (0, 1, 2)
VARIANTS = {  # name -> (method, prefix mode, options)
    "gdpd": ("gdpd", "truncate", {}),
    "no prior": ("gdpd", "truncate", {"use_prior": 0}),
    "joint": ("gdpd", "truncate", {"joint": 1}),
    "J=4": ("gdpd", "truncate", {"samples": 4}),
    "per-feature alpha": ("gdpd", "truncate", {"alpha_per_feature": 1}),
    "gdpd stretch": ("gdpd", "stretch", {}),
    "base": ("base", "truncate", {}),
    "base stretch": ("base", "stretch", {}),
    "kd": ("kd", "truncate", {}),
    "kd stretch": ("kd", "stretch", {}),
}


def dotted(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        out += dotted(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}={v}"]
    return out


def suite_sets(role: str) -> list[str]:
    from earlykd.bench.suites import SUITES
    quick = SUITES["quick"]
    return dotted(quick.common) + dotted(getattr(quick, role))


def teacher(dataset: str, out_dir: Path) -> Path:
    from earlykd import api
    found = sorted((ROOT / "benchmarks/results/quick/runs").glob(f"teacher-{dataset}-*/run.json"))
    if found:
        return found[0].parent
    path = out_dir / "runs" / f"teacher-{dataset}"
    if not (path / "run.json").exists():
        api.train_teacher(data=dataset, sets=suite_sets("teacher"), out=path, threads=1, progress=False,
                          resume=path.exists())
    return path


def job(args) -> dict:
    import torch
    torch.set_num_threads(1)
    from earlykd import api
    variant, dataset, e, seed, teacher_dir, out_dir = args
    method, mode, options = VARIANTS[variant]
    out = out_dir / "runs" / f"{variant.replace(' ', '_').replace('=', '')}-{dataset}-e{e}-s{seed}"
    if (out / "run.json").exists():
        import json
        record = json.loads((out / "run.json").read_text())
    else:
        sets = suite_sets("student") + [f"prefix.mode={mode}"] + [f"method.options.{k}={v}" for k, v in options.items()]
        record = api.distill(teacher_dir, method=method, earliness=e, seed=seed, sets=sets, out=out,
                             threads=1, progress=False, resume=out.exists()).record
    from earlykd.schema import METRICS
    return {"dataset": dataset, "method": method, "earliness": e, "prefix_mode": record["prefix_mode"], "seed": seed,
            "teacher_arch": record["teacher_arch"], "student_arch": record["student_arch"],
            **{k: record["test"][k] for k in METRICS},
            **{k: record[k] for k in ("epochs", "train_seconds", "seconds_per_epoch", "peak_memory_mb", "config_hash",
                                      "version", "best_epoch")},
            "variant": variant, "options": options}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", type=Path, default=OUT, help="results directory (default benchmarks/results/ablation)")
    a = ap.parse_args()
    out_dir = a.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    teachers = {d: teacher(d, out_dir) for d in DATASETS}
    jobs = [(v, d, e, s, teachers[d], out_dir) for d in DATASETS for e in EARLINESS for s in SEEDS for v in VARIANTS]
    with ProcessPoolExecutor(a.workers) as pool:
        rows = list(pool.map(job, jobs))
    with open(out_dir / "runs.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# GDPD ablations", "",
             f"Datasets {', '.join(DATASETS)}; earliness {EARLINESS}; seeds {SEEDS}; quick-suite settings "
             "(FCN-128 teacher, FCN-64 student, 100 epochs, batch 16, warm-up 50, lambda 1, checkpoint by "
             "validation loss). Test AUC-PRC, mean ± std over seeds.", "",
             "| variant | " + " | ".join(f"{d} e={e}" for d in DATASETS for e in EARLINESS) + " | mean | s/epoch |",
             "|---" * (len(DATASETS) * len(EARLINESS) + 3) + "|"]
    for v in VARIANTS:
        cells, means = [], []
        for d in DATASETS:
            for e in EARLINESS:
                vals = [r["auc_prc"] for r in rows if r["variant"] == v and r["dataset"] == d and r["earliness"] == e]
                means.append(statistics.mean(vals))
                cells.append(f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}")
        spe = statistics.median(r["seconds_per_epoch"] for r in rows if r["variant"] == v)
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {statistics.mean(means):.3f} | {spe:.3f} |")
    (out_dir / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
