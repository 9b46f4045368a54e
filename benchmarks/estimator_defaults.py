"""What `earlykd.EarlyClassifier()` gives out of the box, beside the early benchmark's peers.

Per quick dataset and seed 0-2: `EarlyClassifier(random_state=seed, threads=1)` with every other setting at its
default (an FCN teacher trained inside, KD, policy "auto": every registered policy calibrated on the estimator's
own 20 % validation split, validation HM picks) is fitted on the training split and scored on the test split
(aeon's `score`: HM, accuracy, earliness); also with `policy="threshold"`, the default before 2026-11-28. The
arrays are the early benchmark's (`early_vs_peers.arrays`), so every contender reads the same samples; the peers'
and `earlykd:chosen`'s test HM come from `results/early/runs.csv`. Nothing is chosen on the test split.

    python benchmarks/estimator_defaults.py [--workers 2]    # resumable: rows kept in OUT/rows.jsonl
        [--datasets A,B] [--policies auto] [--out DIR] [--peers DIR]   # peers' rows: DIR/runs.csv (default early/)
    Writes OUT/rows.jsonl and OUT/table.md, the table beside the peers (default OUT benchmarks/results/estimator_defaults).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from early_vs_peers import DATASETS, PEERS, SEEDS, arrays  # noqa: E402

OUT = Path(__file__).parent / "results" / "estimator_defaults"
POLICIES = ("auto", "threshold")


def job(args) -> dict:
    import torch
    torch.set_num_threads(1)
    import earlykd
    dataset, seed, policy = args
    X, y, X_test, y_test = arrays(dataset)
    started = time.perf_counter()
    est = earlykd.EarlyClassifier(policy=policy, random_state=seed, threads=1).fit(X, y)
    fit_seconds = time.perf_counter() - started
    hm, accuracy, earliness = est.score(X_test, y_test)
    return {"dataset": dataset, "seed": seed, "policy": policy, "chosen_policy": est.policy_, "hm": hm,
            "accuracy": accuracy, "earliness": earliness, "fit_seconds": round(fit_seconds, 1),
            "torch": torch.__version__, "earlykd": earlykd.__version__}


def summary(rows: pd.DataFrame, peers_dir: Path = OUT.parent / "early") -> str:
    found = pd.read_csv(peers_dir / "runs.csv")
    ran = set(zip(found.dataset, found.contender))   # a contender that ran and failed everywhere: "fails"; not run: "–"
    peers = found[found.contender.isin(PEERS + ("earlykd:chosen",)) & (found.status == "ok")]
    table = rows.groupby(["dataset", "policy"]).agg(hm=("hm", "mean"), sd=("hm", "std"), accuracy=("accuracy", "mean"),
                                                    earliness=("earliness", "mean"), fit=("fit_seconds", "mean"))
    others = peers.groupby(["dataset", "contender"]).hm.mean().unstack()
    lines = ["| dataset | EarlyClassifier() HM | policy=\"threshold\" HM | policies validation chose (auto) | "
             "TEASER | ProbabilityThreshold | NonMyopic | earlykd:chosen | fit s (auto) |", "|---" * 9 + "|"]
    for d in dict.fromkeys(rows.dataset):
        if (d, "auto") not in table.index:
            continue
        a = table.loc[(d, "auto")]
        t = table.loc[(d, "threshold")] if (d, "threshold") in table.index else None
        chose = ", ".join(rows[(rows.dataset == d) & (rows.policy == "auto")].sort_values("seed").chosen_policy)
        peer = [f"{others.loc[d, c]:.3f}" if d in others.index and c in others and pd.notna(others.loc[d, c])
                else "fails" if (d, c) in ran else "–" for c in (*PEERS, "earlykd:chosen")]
        lines.append(f"| {d} | {a.hm:.3f} ± {a.sd:.3f} (acc {a.accuracy:.2f}, e {a.earliness:.2f}) | "
                     + (f"{t.hm:.3f} ± {t.sd:.3f}" if t is not None else "–") + f" | {chose} | "
                     + " | ".join(peer) + f" | {a.fit:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--peers", type=Path, help="directory of the peers' runs.csv (default: the early benchmark's)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    store = a.out / "rows.jsonl"
    done = [json.loads(line) for line in store.read_text().splitlines()] if store.exists() else []
    have = {(r["dataset"], r["seed"], r["policy"]) for r in done}
    todo = [(d, s, p) for p in a.policies.split(",") for d in a.datasets.split(",") for s in SEEDS
            if (d, s, p) not in have]
    with ProcessPoolExecutor(a.workers) as pool, store.open("a") as fh:
        for row in pool.map(job, todo):
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(row, flush=True)
    rows = pd.DataFrame([json.loads(line) for line in store.read_text().splitlines()])
    table = summary(rows, a.peers or OUT.parent / "early")
    (a.out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
