"""Report of the `early` benchmark (benchmarks/early_vs_peers.py) from its runs.csv: per-dataset HM,
accuracy and earliness, failures, average HM rank, a critical-difference diagram on HM (aeon) and
accuracy-vs-earliness curves per dataset. Writes summary.md, hm_cd.png and curves.png into the directory;
a notes.md there is appended verbatim.

    python benchmarks/early_vs_peers_report.py [DIR] [--label TEXT]   (default benchmarks/results/early)
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import early_vs_peers as bench  # noqa: E402

MIN_CD_DATASETS = 4
OVERALL = "earlykd:chosen"   # per dataset and seed, earlykd's method and policy of highest validation HM (cross-validated)
OVERALL_CF = "earlykd:chosen/cf"   # the same among the /cf students, on out-of-fold predictions
FLOATS = ("accuracy", "earliness", "hm", "fit_seconds", "decision_ms", "decision_ms_max", "val_hm", "val_accuracy",
          "val_hm_cv", "val_accuracy_cv")


def load(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k in FLOATS:
            r[k] = float(r[k]) if r.get(k) not in (None, "") else None
        r["seed"] = int(r["seed"])
    return rows


def is_chosen(contender: str) -> bool:
    return contender.endswith(":chosen") or contender in (OVERALL, OVERALL_CF)


def crossfit_complete(rows, dataset: str) -> bool:
    """Every /cf job of the suite (CROSSFIT_METHODS x SEEDS, both grids where T exceeds the teacher's) has a row."""
    have = {(r["contender"].split(":")[1], r["seed"]) for r in rows if r["dataset"] == dataset
            and r["contender"].startswith("earlykd:") and "/cf" in r["contender"] and not is_chosen(r["contender"])}
    grids = ["/cf"] + (["/native/cf"] if bench.native_length(dataset) is not None else [])
    return all((m + g, s) in have for m in bench.CROSSFIT_METHODS for g in grids for s in bench.SEEDS)


def order(contenders) -> list[str]:
    peers = [p for p in bench.PEERS if p in contenders]
    return peers + sorted(c for c in contenders if c not in peers)


def mean_hm(rows, dataset, contender) -> float | None:
    """Mean test HM over the seeds that ran; None when no seed ran (a failure wins nothing)."""
    ok = [r["hm"] for r in rows if r["dataset"] == dataset and r["contender"] == contender and r["status"] == "ok"]
    return float(np.mean(ok)) if ok else None


def best_peer_hm(rows, dataset) -> float | None:
    """The best mean test HM of a peer that ran on the dataset; None when none ran."""
    peers = [h for p in bench.PEERS if (h := mean_hm(rows, dataset, p)) is not None]
    return max(peers) if peers else None


def ranks(rows, contenders, datasets):
    """(average HM rank per contender, datasets ranked, datasets left out): only datasets on which every
    contender has a result are ranked (1 = best, ties averaged)."""
    from scipy.stats import rankdata
    table, used = [], []
    for d in datasets:
        hms = [mean_hm(rows, d, c) for c in contenders]
        if all(h is not None for h in hms):
            table.append(rankdata(-np.array(hms)))
            used.append(d)
    avg = dict(zip(contenders, np.mean(table, 0))) if table else {}
    return avg, used, [d for d in datasets if d not in used]


def cell(values, digits: int = 3) -> str:
    if not values:
        return "–"
    return f"{np.mean(values):.{digits}f}" + (f" ± {np.std(values):.{digits}f}" if len(values) > 1 else "")


def dataset_table(rows, d, contenders) -> list[str]:
    lines = [f"### {d}", "", "| contender | HM | accuracy | earliness | seeds ok | fit s | decision ms / step (worst) "
             "| failures |", "|---|---|---|---|---|---|---|---|"]
    for c in contenders:
        mine = [r for r in rows if r["dataset"] == d and r["contender"] == c]
        if not mine:
            continue
        ok = [r for r in mine if r["status"] == "ok"]
        fails = [r for r in mine if r["status"] != "ok"]
        lat = [r["decision_ms"] for r in ok if r["decision_ms"] is not None]
        worst = [r["decision_ms_max"] for r in ok if r["decision_ms_max"] is not None]
        note = "; ".join(sorted({f"{r['status']} (seed {r['seed']}): {r['error']}" for r in fails}))
        lines.append(f"| {c} | {cell([r['hm'] for r in ok])} | {cell([r['accuracy'] for r in ok])} | "
                     f"{cell([r['earliness'] for r in ok])} | {len(ok)}/{len(mine)} | "
                     f"{cell([r['fit_seconds'] for r in ok], 1)} | "
                     f"{(f'{np.mean(lat):.3f}' + (f' ({np.max(worst):.1f})' if worst else '') if lat else '–')} | "
                     f"{note or ''} |")
    def pick(r):   # the method (with /native where that grid won) and the policy
        s = json.loads(r["settings"])
        return f"{s.get('chosen_variant', s['chosen_method'])}:{s['chosen_policy']}"
    for cf, overall, on in ((False, OVERALL, "validation"), (True, OVERALL_CF, "out-of-fold predictions (/cf)")):
        chosen = [r for r in rows if r["dataset"] == d and is_chosen(r["contender"])
                  and ("/cf" in r["contender"]) == cf and r["contender"].count(":") == 2]
        picks = sorted({f"{r['contender'].split(':')[1]} s{r['seed']}: {pick(r).split(':', 1)[-1]}"
                        + (" (native grid)" if "/native" in pick(r) else "") for r in chosen})
        picks += sorted(f"overall s{r['seed']}: {pick(r)}" for r in rows if r["dataset"] == d
                        and r["contender"] == overall)
        if picks:
            lines += ["", f"Chosen on {on}: " + ", ".join(picks) + "."]
    return lines + [""]


def cd_diagram(rows, contenders, used, path: Path) -> str:
    if len(used) < MIN_CD_DATASETS:
        return f"No critical-difference diagram: {len(used)} complete dataset(s), {MIN_CD_DATASETS} needed."
    import matplotlib
    matplotlib.use("Agg")
    from aeon.visualisation import plot_critical_difference
    scores = np.array([[mean_hm(rows, d, c) for c in contenders] for d in used])
    fig, _ = plot_critical_difference(scores, contenders)
    fig.savefig(path, bbox_inches="tight", dpi=120)
    return f"![critical difference on HM]({path.name}) (Wilcoxon–Holm, α = 0.1, {len(used)} datasets)."


def curves(rows, datasets, contenders, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = min(3, len(datasets))
    fig, axes = plt.subplots((len(datasets) + cols - 1) // cols, cols, figsize=(4.2 * cols, 3.6 * ((len(datasets) + cols - 1) // cols)),
                             squeeze=False)
    grid = np.linspace(0.01, 1, 100)
    for ax, d in zip(axes.flat, datasets):
        for hm in (0.5, 0.6, 0.7, 0.8, 0.9):  # iso-HM lines: accuracy = hm (1 - e) / (2 (1 - e) - hm)
            acc = hm * (1 - grid) / np.clip(2 * (1 - grid) - hm, 1e-9, None)
            keep = (acc > 0) & (acc <= 1) & (2 * (1 - grid) > hm)
            ax.plot(grid[keep], acc[keep], color="0.88", lw=0.8, zorder=0)
        for i, c in enumerate(contenders):
            ok = [r for r in rows if r["dataset"] == d and r["contender"] == c and r["status"] == "ok"]
            if not ok:
                continue
            color = plt.cm.tab10(i % 10)
            if c.endswith(":chosen") and c not in (OVERALL, OVERALL_CF):  # the anytime student at every fixed earliness, mean over seeds
                pts = np.mean([json.loads(r["curve"]) for r in ok], 0)
                ax.plot(pts[:, 0], pts[:, 1], lw=1, color=color, label=f"{c.rsplit(':', 1)[0]} at fixed e")
            ax.scatter(np.mean([r["earliness"] for r in ok]), np.mean([r["accuracy"] for r in ok]), s=22,
                       color=color, label=c, marker="o" if c.startswith("earlykd") else "s")
        ax.set(title=d, xlabel="earliness (share seen)", ylabel="test accuracy", xlim=(0, 1), ylim=(0, 1.02))
    for ax in list(axes.flat)[len(datasets):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=7, bbox_to_anchor=(0.5, 0.0))
    fig.savefig(path, bbox_inches="tight", dpi=110)
    plt.close(fig)


def teacher_text(t: dict, budget) -> str:
    if "quick_suite_ensemble" in t:
        e = t["quick_suite_ensemble"]
        return (f"the quick suite's teacher of the dataset, the same for every seed (the mean of {e['members']} "
                f"{e['arch'].upper()}s, {e['layers']} layers, width {e['hidden']}, each with its epochs chosen by "
                f"5-fold CV within a {e['budget']}-epoch budget, then refit)")
    return (f"a teacher ({t['arch'].upper()}, {t['layers']} layers, width {t['hidden']}, epochs chosen by 5-fold CV "
            f"within a {budget}-epoch budget, then refit)")


def given(settings: dict, native: list[str] = (), crossfit: bool = False) -> list[str]:
    t, s, epochs = settings["teacher"], settings["student"], settings["epochs"]
    te, se = epochs if isinstance(epochs, list) else (None, epochs)
    cuts = ", ".join(f"{p} on {d}: seed {'/'.join(map(str, v))}" for (p, d), v in bench.CUTS.items())
    nm = ", ".join(f"{k}={v}" for k, v in settings["nonmyopic"].items())
    by = (f"{settings['selection']} (each validation fold decided by the policy calibrated on the others)"
          if settings.get("selection") else "validation HM")
    return [
        "## What each contender was given", "",
        "- **Data, all contenders:** the bundled UCR/UEA train/test split; the same arrays for everyone. "
        "JapaneseVowels (7–26 samples in training, up to 29 in test) is brought to T = 26, the longest training "
        "series, as earlykd's prefix contract does: a shorter series is held at its last value, a longer test series "
        "is read up to its 26th sample. Earliness = share of the T raw samples seen when the decision is made; "
        "HM = 2·acc·(1 − e)/(acc + 1 − e).",
        f"- **earlykd:<method>:<policy>:** {teacher_text(t, te)} and one anytime student "
        f"({s['arch'].upper()}, width {s['hidden']}, {se} epochs, 20 earliness levels 0.05 … 1.0, {s['mode']} "
        f"prefixes{', batch-norm statistics per checkpoint' if s.get('level_norm') else ''}) per method, trained with `earlykd.early.run.train_early`; every registered policy calibrated "
        "on the validation split (20 % of the training split, stratified, split seed 0), so earlykd trains on "
        f"80 % of what the peers train on. `earlykd:<method>:chosen` is the policy of highest {by} "
        "(ties: its accuracy) for that dataset, seed and method; test scores play no part. fit_seconds: "
        "the anytime student's run (training, calibration, test evaluation), plus the teacher's (CV and refit; for "
        "an ensemble, all its members) for methods that distil; Base does not use the teacher. `uncertainty` waits "
        "on DLF's mutual information for dlf students and on the entropy of the probabilities otherwise.",
        *([f"- **earlykd:<method>/native:<policy>** (on {', '.join(native)}, where T exceeds the teacher's "
           f"{bench.TEACHER_GRID} steps): the same student on a grid of the series' own T samples "
           "(`early.length = T`; the teacher keeps its grid). The chosen rows choose between the two grids on "
           f"{by}, with the policy."] if native else []),
        *([f"- **earlykd:<method>[/native]/cf:<policy>** ({', '.join(bench.CROSSFIT_METHODS)}): the same students, "
           f"trained on the whole training split (train + validation) for the same epochs, their policies calibrated "
           f"on {bench.CROSSFIT}-fold out-of-fold predictions of every training series (`early.crossfit = "
           f"{bench.CROSSFIT}`: {bench.CROSSFIT} more students per job, each trained on the other folds; logits only, so "
           f"`uncertainty` reads the entropy and `elects` the logits). `{OVERALL_CF}` and `earlykd:<method>/cf:chosen` "
           "choose on the out-of-fold HM."] if crossfit else []),
        "- **teaser:** aeon `TEASER()` with its defaults (random_state = seed), fit on the whole training split.",
        "- **probability_threshold:** aeon `ProbabilityThresholdEarlyClassifier()` with its defaults (DrCIF, "
        "probability 0.85, 1 consecutive prediction, random_state = seed), fit on the whole training split.",
        f"- **nonmyopic:** tslearn `NonMyopicEarlyClassifier({nm}, random_state=seed)`: the documented defaults "
        "(n_clusters 2, a 1-NN Euclidean classifier per time step), fit on the whole training split. With a time "
        "cost of 1 per step and misclassification costs below 1, waiting never pays: it decides at or near "
        "min_t (see the earliness column).",
        (f"- **Cuts** (defaults too slow for 2 cores on the long datasets): {cuts}; every other pair runs seeds "
         f"{'/'.join(map(str, bench.SEEDS))}." if cuts else
         f"- **Seeds:** every contender runs seeds {'/'.join(map(str, bench.SEEDS))} on every dataset (no cuts).")
        + f" Each job has a {bench.TIMEOUT // 3600} h limit; a job past it is a `timeout` row.",
        "- **Failures** are rows with status `failed` or `timeout` and their one-line error; they score nothing and "
        "win nothing: a dataset where a ranked contender has no result is left out of that ranking.",
        "- **decision_ms:** wall ms of decision work per new time step, averaged over the steps a stream takes "
        f"until the contender decides ({settings['latency_series']} test series, one at a time, 1 thread). earlykd: "
        "`EarlyClassifier.update_predict` with every new sample. aeon peers: `update_predict` at each of their "
        "classification points (aeon refuses other lengths; steps in between cost nothing). NonMyopic: its own "
        "per-step rule (expected future costs of the prefix, then the 1-NN at that step when it stops). "
        "Worst single step in brackets.",
        "- Every job runs in its own process with 1 thread (torch, OpenMP, BLAS, numba) on a 2-core machine "
        "shared with other work; times are indicative.", ""]


def settings_of(out: Path) -> dict:
    """The settings the runner stored with the rows (the runner's defaults when there are none yet)."""
    import sqlite3
    default = {"epochs": bench.EPOCHS, "teacher": bench.TEACHER, "student": bench.STUDENT,
               "nonmyopic": bench.NONMYOPIC, "latency_series": bench.LATENCY_SERIES}
    if not (out / "results.db").is_file():
        return default
    found = sqlite3.connect(out / "results.db").execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
    if not found:
        return default
    parts = bench.settings_parts(json.loads(found[0]))
    return {**parts["peers"], **parts["earlykd"]}


def validation_size(dataset: str) -> int:
    """The number of series in earlykd's validation split of a dataset (earlykd.data.prepare's rule: 20 %, at
    least one per class)."""
    y = bench.arrays(dataset)[1]
    return max(len(np.unique(y)), math.ceil(0.2 * len(y)))


def selection_check(rows, datasets) -> list[str]:
    """How well validation ranked earlykd's candidates (method x grid x policy, calibrated on validation) on each
    dataset: Spearman correlation of validation and test HM per seed, and the best candidate on test beside the one
    validation chose. A diagnosis only: the best-on-test column is chosen on test and is nobody's result."""
    from scipy.stats import spearmanr
    lines = ["## How well validation chose (a diagnosis; test scores choose nothing here)", "",
             "Per dataset, means over the seeds: the candidates validation chose among; the rank correlation of their "
             "validation and test HM; `earlykd:chosen`'s validation and test HM and accuracy; the candidate best on "
             "test (an upper bound for any rule that chooses among these candidates, not a result); the best peer.",
             "", "| dataset | validation series | candidates | Spearman (val, test HM) | chosen HM val / test | chosen "
             "accuracy val / test | best on test | best peer |", "|---|---|---|---|---|---|---|---|"]
    partial = bench.incomplete_variants(rows)
    for d in datasets:
        per_seed = []
        for seed in sorted({r["seed"] for r in rows if r["dataset"] == d}):
            cands = [r for r in rows if r["dataset"] == d and r["seed"] == seed and r["status"] == "ok"
                     and r["contender"].startswith("earlykd:") and not is_chosen(r["contender"])
                     and "/cf" not in r["contender"] and (d, r["contender"].split(":")[1].partition("/")[2]) not in partial]
            chosen = [r for r in rows if r["dataset"] == d and r["seed"] == seed and r["contender"] == OVERALL]
            if len(cands) < 3 or not chosen:
                continue
            crossed = all(r["val_hm_cv"] is not None for r in cands)
            rho = spearmanr([bench.selection_figures(r, crossed)[0] for r in cands], [r["hm"] for r in cands]).correlation
            c = chosen[0]
            val_hm, val_acc = bench.selection_figures(c, crossed)
            per_seed.append((len(cands), rho, val_hm, c["hm"], val_acc, c["accuracy"], max(r["hm"] for r in cands)))
        peer = best_peer_hm(rows, d)
        if not per_seed:
            continue
        n, rho, vh, th, va, ta, top = np.mean(per_seed, axis=0)
        best_peer = "–" if peer is None else f"{peer:.3f}"
        lines.append(f"| {d} | {validation_size(d)} | {n:.0f} | {rho:+.2f} | {vh:.3f} / {th:.3f} | "
                     f"{va:.2f} / {ta:.2f} | {top:.3f} | {best_peer} |")
    return lines + [""]


OWN_RULE = "earlykd:chosen, by its own HM"


def rule_comparison(rows, datasets) -> list[str]:
    """`earlykd:chosen` by the cross-validated HM beside the same choice by the calibration's own HM, on the same
    students: test HM per dataset, how often each is at or above the best peer, and each one's average HM rank
    among the peers. Empty when the rows carry no cross-validated HM."""
    students = [r for r in rows if r["contender"].startswith("earlykd:") and not is_chosen(r["contender"])
                and "/cf" not in r["contender"]]
    if not any(r["val_hm_cv"] is not None for r in students):
        return []
    own = [{**r, "contender": OWN_RULE} for r in bench.chosen_rows(students, crossed=False) if r["contender"] == OVERALL]
    both = rows + own
    lines = ["## The rule of choice: cross-validated HM against the calibration's own HM (same students)", "",
             "| dataset | by cross-validated HM | by own HM | best peer |", "|---|---|---|---|"]
    above = {OVERALL: [], OWN_RULE: []}
    for d in datasets:
        peer = best_peer_hm(rows, d)
        mine = {c: mean_hm(both, d, c) for c in above}
        if any(h is None for h in mine.values()):
            continue
        for c, h in mine.items():
            if peer is not None and h >= peer:
                above[c].append(d)
        lines.append(f"| {d} | {mine[OVERALL]:.3f} | {mine[OWN_RULE]:.3f} | {'–' if peer is None else f'{peer:.3f}'} |")
    lines.append("")
    for c, found in above.items():
        avg, used, _ = ranks(both, [c, *bench.PEERS], datasets)
        rank = f"{avg[c]:.2f} among the peers over {len(used)} dataset(s)" if used else "no dataset with every peer"
        lines.append(f"- `{c}`: at or above the best peer on {len(found)} of {len(datasets)} "
                     f"({', '.join(found) or 'none'}); average HM rank {rank}.")
    return lines + [""]


def summary(rows, label: str, out: Path) -> str:
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    cf_done = [d for d in datasets if crossfit_complete(rows, d)]
    # a /cf choice counts only where every /cf job of the dataset is in
    rows = [r for r in rows if not (is_chosen(r["contender"]) and "/cf" in r["contender"]) or r["dataset"] in cf_done]
    contenders = order({r["contender"] for r in rows})
    lines = [f"# Early classification against the peers{f' — {label}' if label else ''}", ""]
    if not rows:
        lines += ["No rows yet: the suite has not been run here.", ""]
    else:
        head = [c for c in contenders if c in bench.PEERS or c == OVERALL]
        per_method = [c for c in contenders if c in bench.PEERS or (c.endswith(":chosen") and c != OVERALL
                                                                     and "/cf" not in c)]
        head_cf = [c for c in contenders if c in bench.PEERS or c == OVERALL_CF]
        per_method_cf = [c for c in contenders if c in bench.PEERS or (c.endswith("/cf:chosen"))]
        lines += ["## Average HM rank", ""]
        if any("/cf" in r["contender"] for r in rows):
            lines += [f"`/cf` students (calibrated on out-of-fold predictions; notes.md) complete on: "
                      f"{', '.join(cf_done) or 'none yet'}. Their chosen rows are ranked on those datasets only.", ""]
        by = "cross-validated validation HM" if any(r["val_hm_cv"] is not None for r in rows) else "validation HM"
        tables = [(f"The peers and `{OVERALL}` (earlykd's method and policy of highest {by}, per "
                   "dataset and seed)", head),
                  ("The peers and each earlykd method with its policy chosen on validation", per_method)]
        if cf_done:
            tables += [(f"The peers and `{OVERALL_CF}` (the `/cf` method, grid and policy of highest out-of-fold HM, "
                        "per dataset and seed)", head_cf),
                       ("The peers and each `/cf` method with its grid and policy chosen out of fold", per_method_cf)]
        for title, group in tables:
            avg, used, left = ranks(rows, group, datasets)
            lines += [f"{title}, over {len(used)} dataset(s) where all have a result"
                      + (f" (left out: {', '.join(left)})" if left else "") + ":", "",
                      "| contender | average HM rank |", "|---|---|"]
            lines += [f"| {c} | {avg[c]:.2f} |" for c in sorted(avg, key=avg.get)] + [""]
        avg_all, used_all, _ = ranks(rows, contenders, datasets)
        lines += [f"Every contender, over {len(used_all)} dataset(s): " +
                  ", ".join(f"{c} {avg_all[c]:.2f}" for c in sorted(avg_all, key=avg_all.get)) + ".", ""]
        partial = sorted(bench.incomplete_variants(rows))
        if partial:
            lines += ["Unfinished grid variants (listed per dataset, but in no chosen row until every seed and method "
                      "has run): " + ", ".join(f"{v} on {d}" for d, v in partial) + ".", ""]
        for c in [c for c in contenders if is_chosen(c)]:
            both = {d: (mean_hm(rows, d, c), best_peer_hm(rows, d)) for d in datasets}
            wins = [d for d, (mine, peer) in both.items() if mine is not None and peer is not None and mine >= peer]
            lines.append(f"- {c} is at or above the best peer that ran on {len(wins)} of {len(datasets)} "
                         f"dataset(s){': ' + ', '.join(wins) if wins else ''}.")
        lines += [""] + selection_check(rows, datasets) + rule_comparison(rows, datasets)
        _, used, _ = ranks(rows, head, datasets)
        lines += ["## Critical difference on HM", "", cd_diagram(rows, head, used, out / "hm_cd.png"), "",
                  "## Per dataset (test split; mean ± std over the seeds that ran)", ""]
        for d in datasets:
            lines += dataset_table(rows, d, contenders)
        curves(rows, datasets, contenders, out / "curves.png")
        lines += ["## Accuracy against earliness", "", "![accuracy against earliness](curves.png)", "",
                  "Points: each contender's decisions (mean over seeds). Lines: the anytime student's test accuracy "
                  "at every fixed earliness level; grey: iso-HM lines 0.5 … 0.9.", ""]
    lines += given(settings_of(out), sorted({r["dataset"] for r in rows if "/native" in r["contender"]}),
                   any("/cf" in r["contender"] for r in rows))
    notes = out / "notes.md"
    if notes.is_file():
        lines += [notes.read_text().rstrip(), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", nargs="?", default="benchmarks/results/early")
    p.add_argument("--label", default="", help="e.g. 'slice, not the suite result'")
    a = p.parse_args(argv)
    out = Path(a.dir)
    rows = load(out / "runs.csv") if (out / "runs.csv").is_file() else []
    (out / "summary.md").write_text(summary(rows, a.label, out))
    print(f"wrote {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
