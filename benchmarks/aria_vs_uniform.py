"""Anytime students with uniform and ARIA-style sampling: same teacher, seeds, epochs and settings.

Per dataset one FCN-128 teacher; per seed three anytime FCN-64 KD students that differ only in how
batches draw (series, earliness): `uniform` (today's default), `aria` (adaptive, settings fixed in
advance below) and `regions` (ARIA's regions drawn uniformly, no adaptation: eps = 1, which separates
the effect of re-weighting regions from that of tracking). Reports test AUC-PRC per earliness, per
class and per teacher-feature cluster at short prefixes, and ARIA's per-region EMA against the true
discrepancy on the validation split at checkpoints.

    python benchmarks/aria_vs_uniform.py [OUT]      (default benchmarks/results/aria; resumable)
    python benchmarks/aria_vs_uniform.py OUT --report    (tables and plots from OUT/results.json)
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from earlykd import api, runs
from earlykd.early.anytime import LevelSplit
from earlykd.early.aria import AriaConfig, Regions
from earlykd.early.run import load_decider, train_early
from earlykd.evaluate.metrics import _trapezoid_pr

DATASETS = ("GunPoint", "ArrowHead", "ItalyPowerDemand")
SEEDS = (0, 1, 2)
EPOCHS = 300
TEACHER = {"arch": "fcn", "layers": 3, "hidden": 128, "epochs": 150, "select": "acc_loss"}
STUDENT = {"arch": "fcn", "layers": 3, "hidden": 64, "epochs": EPOCHS}
COMMON = {"batch_size": 16, "threads": 1, "progress": False, "mode": "truncate"}
METHOD = "kd"
# fixed before any run; beta 0.1 rather than 0.05: each region is updated only a few hundred times here
ARIA = {"bins": 10, "groups": "auto", "clusters": 4, "eps": 0.2, "beta": 0.1, "temperature": 1.0,
        "warmup_share": 0.1, "weights": False, "normalise": False}
ARMS = {"uniform": None, "aria": ARIA, "regions": {**ARIA, "eps": 1.0},
        # added after GunPoint's first aria runs were seen: the spec's optional normalisation, untuned
        "aria-norm": {**ARIA, "normalise": True},
        # control added with it: one region, so pairs are drawn uniformly but i.i.d. (with replacement)
        "iid": {**ARIA, "bins": 1, "groups": "none", "eps": 1.0}}
REPORT_E = [round(0.1 * i, 1) for i in range(1, 11)]
SHORT = (0.1, 0.2, 0.3)


def arm_sets(arm: str) -> list[str]:
    options = ARMS[arm]
    if options is None:
        return []
    return ["early.sampling=aria"] + [f"early.aria.{k}={str(v).lower() if isinstance(v, bool) else v}"
                                      for k, v in options.items()]


def evaluate(run_dir: Path, data, teacher) -> dict:
    """Per-class AUC-PRC and per-cluster accuracy at every level, from the saved student (test split)."""
    decider = load_decider(run_dir)
    test = LevelSplit.of(data, "test", decider.levels, decider.mode, None)
    logits = test.logits(decider.student)
    probs = torch.softmax(torch.from_numpy(logits), -1).numpy()
    y = data.labels["test"].numpy()
    outputs = teacher.outputs(data, torch.device("cpu"))
    regions = Regions(AriaConfig.of(ARIA), decider.levels, outputs["train"].feature, data.labels["train"], 0)
    cluster = regions.assign(outputs["test"].feature, data.labels["test"])
    out = {}
    for m, e in enumerate(decider.levels):
        per_class = {str(c): _trapezoid_pr(y == c, probs[m][:, c]) for c in range(probs.shape[2]) if (y == c).any()}
        right = probs[m].argmax(1) == y
        per_cluster = {str(g): float(right[cluster == g].mean()) for g in np.unique(cluster)}
        out[str(e)] = {"per_class_auc_prc": per_class, "per_cluster_accuracy": per_cluster}
    counts = {"train_clusters": np.bincount(regions.group).tolist(), "test_clusters": np.bincount(cluster).tolist(),
              "train_classes": np.bincount(data.labels["train"].numpy()).tolist(), "cluster_kind": regions.kind}
    return {"levels": out, "counts": counts}


def run(out: Path) -> dict:
    torch.set_num_threads(1)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
    results["settings"] = {"teacher": TEACHER, "student": STUDENT, **COMMON, "method": METHOD, "aria": ARIA,
                           "seeds": list(SEEDS), "datasets": list(DATASETS), "levels": "0.05..1.0 (20)",
                           "torch": torch.__version__, "threads": torch.get_num_threads()}
    for name in DATASETS:
        t_dir = out / "runs" / name / "teacher"
        if (t_dir / "run.json").is_file():
            teacher_run = runs.Run(t_dir, runs.read_run(t_dir)[1])
        else:
            teacher_run = api.train_teacher(data=name, out=str(t_dir), seed=0,
                                            **{k: v for k, v in {**TEACHER, **COMMON}.items() if k != "mode"})
        from earlykd.teacher import Teacher
        teacher = Teacher.load(t_dir)
        data = runs.load_prepared(teacher.cfg["data"])
        results.setdefault("teachers", {})[name] = teacher_run.record["test"]
        for seed in SEEDS:
            for arm in ARMS:
                key = f"{name}/{arm}/s{seed}"
                if key in results["runs"]:
                    continue
                started = time.perf_counter()
                cfg = api.make_config(teacher=str(t_dir), method=METHOD, seed=seed,
                                      out=str(out / "runs" / name / f"{arm}-s{seed}"),
                                      sets=arm_sets(arm), **STUDENT, **COMMON)
                rec = train_early(cfg, None, ["threshold"]).record
                row = {"test_levels": {e: v["auc_prc"] for e, v in rec["test_levels"].items()},
                       "best_epoch": rec["best_epoch"], "train_seconds": rec["train_seconds"],
                       "val": rec["val"], **evaluate(out / "runs" / name / f"{arm}-s{seed}", data, teacher)}
                if "aria" in rec:
                    row["aria"] = {"regions": rec["aria"]["regions"], "trace": rec["aria"]["trace"]}
                results["runs"][key] = row
                path.write_text(json.dumps(results) + "\n")
                print(f"{key}: mean AUC-PRC {np.mean(list(row['test_levels'].values())):.4f} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    return results


# -- report ---------------------------------------------------------------------------------------------

def _arr(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], float)


def _ms(values) -> str:
    v = np.array(values, float)
    return f"{v.mean():.3f} ± {v.std():.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def _runs(res: dict, name: str, arm: str) -> list[dict]:
    return [res["runs"][k] for k in sorted(res["runs"]) if k.startswith(f"{name}/{arm}/")]


def _short(row: dict, part: str) -> dict:
    """Mean over the short prefixes of per-class AUC-PRC or per-cluster accuracy."""
    keys = row["levels"][str(SHORT[0])][part]
    return {k: float(np.mean([row["levels"][str(e)][part][k] for e in SHORT])) for k in keys}


def _tracking(row: dict) -> list[tuple[int, float, float, float]]:
    """(epoch, Spearman rank correlation EMA vs held-out over regions, mean EMA, mean held-out) per checkpoint."""
    from scipy.stats import spearmanr
    out = []
    for t in row["aria"]["trace"]:
        ema, held = _arr(t["ema"]), _arr(t.get("held_out", []))
        ok = ~np.isnan(ema) & ~np.isnan(held)
        rho = spearmanr(ema[ok], held[ok])[0] if ok.sum() > 2 else np.nan
        out.append((t["epoch"], float(rho), float(np.nanmean(ema)), float(np.nanmean(held))))
    return out


def _bin_series(row: dict, key: str) -> tuple[list[int], np.ndarray]:
    """Per earliness bin over checkpoints: summed probability (key p) or mean over groups (ema, held_out)."""
    regions = np.array(row["aria"]["regions"]["regions"])
    bins = int(regions[:, 0].max()) + 1
    epochs, rows = [], []
    for t in row["aria"]["trace"]:
        v = _arr(t[key])
        epochs.append(t["epoch"])
        if key == "p":
            rows.append(np.bincount(regions[:, 0], v, bins))
        else:
            rows.append([np.nanmean(v[regions[:, 0] == b]) if (~np.isnan(v[regions[:, 0] == b])).any() else np.nan
                         for b in range(bins)])
    return epochs, np.array(rows)


def plots(res: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [n for n in DATASETS if _runs(res, n, "uniform")]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        for arm in ARMS:
            rows = _runs(res, name, arm)
            if rows:
                v = np.array([[r["test_levels"][str(e)] for e in REPORT_E] for r in rows])
                ax.errorbar(REPORT_E, v.mean(0), v.std(0), label=f"{arm} ({len(rows)} seeds)", capsize=2, marker="o",
                            ms=3)
        ax.set(title=name, xlabel="earliness", ylabel="test AUC-PRC")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "auc_prc_vs_earliness.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(2, len(names), figsize=(5 * len(names), 7), squeeze=False)
    for j, name in enumerate(names):
        rows = _runs(res, name, "aria")
        if not rows:
            continue
        epochs, ema = _bin_series(rows[0], "ema")
        _, held = _bin_series(rows[0], "held_out")
        _, p = _bin_series(rows[0], "p")
        colours = plt.cm.viridis(np.linspace(0, 1, ema.shape[1]))
        for b in range(ema.shape[1]):
            axes[0][j].plot(epochs, ema[:, b], color=colours[b], label=f"bin {b + 1}" if b in (0, 4, 9) else None)
            axes[0][j].plot(epochs, held[:, b], color=colours[b], ls=":", marker=".")
            axes[1][j].plot(epochs, p[:, b], color=colours[b], label=f"e in ({b / 10:.1f}, {(b + 1) / 10:.1f}]")
        axes[0][j].set(title=f"{name} seed 0: EMA (solid) vs validation (dotted)", xlabel="epoch",
                       ylabel="KL(teacher full || student prefix)", yscale="log")
        axes[0][j].legend(fontsize=7)
        axes[1][j].set(title=f"{name} seed 0: sampling probability per earliness bin", xlabel="epoch", ylabel="p")
        axes[1][j].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "traces.png", dpi=110)
    plt.close(fig)


def report(out: Path) -> None:
    res = json.loads((out / "results.json").read_text())
    s = res["settings"]
    names = [n for n in DATASETS if _runs(res, n, "uniform")]
    lines = ["# ARIA-style sampling against uniform sampling for the anytime student", "",
             f"Method {s['method']}; teacher FCN-128 (3 layers, {TEACHER['epochs']} epochs, checkpoint by validation "
             f"accuracy, seed 0), one per dataset and shared by every student of it; anytime students FCN-64 (3 layers), "
             f"{EPOCHS} epochs, batch {s['batch_size']}, truncated prefixes, 20 levels 0.05 ... 1.0, checkpoint by "
             f"validation loss averaged over levels; seeds {s['seeds']}; torch {s['torch']}, CPU, 1 thread, on 2 cores "
             "shared with a background sweep and other engineers' tests. Arms differ only in how a batch draws "
             "(series, earliness): `uniform` (the default: one level per batch, every series once per epoch), `aria` "
             f"(settings fixed before any run: {json.dumps(ARIA)}) and `regions` (the same regions drawn uniformly, "
             "eps = 1: no adaptation); `aria-norm` (aria with the spec's optional normalisation: d_r divided by the "
             "teacher's own discrepancy between its prefix and full-series outputs in r, plus its mean over regions) "
             "was added after the first GunPoint aria runs had been seen, untuned, together with `iid` (one region: "
             "pairs drawn uniformly but independently, with replacement, as the other non-uniform arms draw). The test split is read once per "
             "run, after training. Numbers: mean ± std over seeds.", "",
             "Cut to fit about 40 minutes of 2 shared cores (against the quick suite): one FCN-128 teacher per dataset "
             "checkpointed on validation accuracy (quick: the mean of 5 cross-validated FCN-128); GunPoint, ArrowHead "
             "and ItalyPowerDemand only (OSULeaf, JapaneseVowels, ACSF1 left out); one method (KD); 300 anytime "
             "epochs (the foundation measurement used 500 to match five per-earliness students' 100 each); 3 seeds. "
             "Wall times per run (60–140 s) were inflated by the shared machine.",
             "", "## Test AUC-PRC per earliness", ""]
    lines += ["| dataset | arm | " + " | ".join(f"{e}" for e in REPORT_E) + " | mean 0.1–0.3 | mean 0.1–1.0 |",
              "|---|---|" + "---|" * (len(REPORT_E) + 2)]
    for name in names:
        for arm in ARMS:
            rows = _runs(res, name, arm)
            if not rows:
                continue
            cells = [_ms([r["test_levels"][str(e)] for r in rows]) for e in REPORT_E]
            short = _ms([np.mean([r["test_levels"][str(e)] for e in SHORT]) for r in rows])
            full = _ms([np.mean([r["test_levels"][str(e)] for e in REPORT_E]) for r in rows])
            lines.append(f"| {name} | {arm} ({len(rows)}) | " + " | ".join(cells) + f" | {short} | {full} |")
    lines += ["", "## Choosing the sampling on validation", "",
              "Per dataset and seed, the arm of lowest validation loss (the checkpoint criterion: cross-entropy averaged "
              "over levels) among those run; its test AUC-PRC (mean 0.1–1.0) against uniform's.", "",
              "| dataset | seed | chosen | its mean AUC-PRC | uniform's |", "|---|---|---|---|---|"]
    for name in names:
        for seed in s["seeds"]:
            arms = {a: res["runs"][f"{name}/{a}/s{seed}"] for a in ARMS if f"{name}/{a}/s{seed}" in res["runs"]}
            if "uniform" not in arms:
                continue
            best = min(arms, key=lambda a: arms[a]["val"]["val_loss"])
            mean = lambda r: np.mean([r["test_levels"][str(e)] for e in REPORT_E])  # noqa: E731
            lines.append(f"| {name} | {seed} | {best} | {mean(arms[best]):.3f} | {mean(arms['uniform']):.3f} |")
    lines += ["", "## Short prefixes (mean over e = 0.1, 0.2, 0.3) by class and by teacher-feature cluster", "",
              "Class: one-vs-rest AUC-PRC; cluster: accuracy of the test series the training clusters assign to it. "
              "Sizes are training series (fit part) per class / cluster, then test series per cluster.", "",
              "| dataset | arm | per class (train size) | per cluster (train / test size) |", "|---|---|---|---|"]
    for name in names:
        for arm in ARMS:
            rows = _runs(res, name, arm)
            if not rows:
                continue
            c = rows[0]["counts"]
            per_class = [_short(r, "per_class_auc_prc") for r in rows]
            per_cluster = [_short(r, "per_cluster_accuracy") for r in rows]
            cls = ", ".join(f"{k} ({c['train_classes'][int(k)]}): {np.mean([p[k] for p in per_class]):.3f}"
                            for k in per_class[0])
            clu = ", ".join(f"{k} ({c['train_clusters'][int(k)]}/{c['test_clusters'][int(k)]}): "
                            f"{np.mean([p[k] for p in per_cluster]):.3f}" for k in per_cluster[0])
            lines.append(f"| {name} | {arm} | {cls} | {clu} |")
    lines += ["", "## Tracking: ARIA's EMA against the true per-region discrepancy on the validation split", "",
              "Both are KL(teacher on the full series || student on the prefix). The EMA follows the training "
              "samples' discrepancy in the student's training forward pass (before the step); the true value is the "
              "student in eval mode on the validation series of each region (regions assigned with the training "
              "clusters), at checkpoints every 10 % of the epochs. Spearman ρ over regions; means over regions.", "",
              "| dataset | arm | seed | epoch: ρ / mean EMA / mean validation |", "|---|---|---|---|"]
    for name in names:
        for arm in ("aria", "aria-norm"):
            for seed, row in enumerate(_runs(res, name, arm)):
                cells = "; ".join(f"{e}: {rho:.2f} / {m:.3f} / {h:.3f}" for e, rho, m, h in _tracking(row)[::3])
                lines.append(f"| {name} | {arm} | {seed} | {cells} |")
    lines += ["", "## Where ARIA put the batches (share of draws per earliness bin at the last checkpoint)", "",
              "| dataset | arm | seed | " + " | ".join(f"≤{(b + 1) / 10:.1f}" for b in range(10)) + " |",
              "|---|---|---|" + "---|" * 10]
    for name in names:
        for arm in ("aria", "aria-norm"):
            for seed, row in enumerate(_runs(res, name, arm)):
                _, p = _bin_series(row, "p")
                lines.append(f"| {name} | {arm} | {seed} | " + " | ".join(f"{v:.2f}" for v in p[-1]) + " |")
    lines += ["", "Best epochs (validation loss over levels), per arm: " + "; ".join(
        f"{n} {a} {[r['best_epoch'] for r in _runs(res, n, a)]}" for n in names for a in ARMS),
        "", "Teachers (test): " + ", ".join(f"{n} AUC-PRC {t['auc_prc']:.3f}, accuracy {t['accuracy']:.3f}"
                                           for n, t in res.get("teachers", {}).items()),
        "", "Plots: `auc_prc_vs_earliness.png` (mean ± std over seeds), `traces.png` (seed 0 of each dataset: EMA "
        "and validation discrepancy per earliness bin, averaged over its clusters, and the sampling probability per "
        "bin). Reproduce: `python benchmarks/aria_vs_uniform.py` (resumable; `--report` redraws from results.json)."]
    findings = out / "findings.md"   # written by hand after reading the tables above
    if findings.is_file():
        lines += ["", findings.read_text().rstrip()]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    plots(res, out)


if __name__ == "__main__":
    OUT = Path(sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "benchmarks/results/aria")
    OUT.mkdir(parents=True, exist_ok=True)
    if "--report" not in sys.argv:
        run(OUT)
    report(OUT)
