"""Out-of-fold logits for teachers trained before they were kept (`oof_logits.safetensors`, see earlykd.teacher).

Each member's cross-validation is run again with its own settings and seed, its curves are checked against the
member's stored cv.json, and each train + val series' logits from the fold that held it out, at the chosen epoch,
are written next to the member's model. DLF's `oof = 1` reads them. Teachers trained now write them themselves.

    python benchmarks/teacher_oof.py [--datasets GunPoint,...] [--root benchmarks/results/quick/runs]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def backfill(member: Path) -> str:
    from earlykd import threads
    from earlykd.rundir import load_prepared, read_run
    from earlykd.teacher import CV_FILE, OOF_FILE
    from earlykd.teacher_training import run_cv, save_out_of_fold
    from earlykd.train import Split
    if (member / OOF_FILE).is_file():
        return f"{member}: already there"
    cfg, _ = read_run(member)
    stored = json.loads((member / CV_FILE).read_text())["result"]
    data = load_prepared(cfg["data"])
    threads.apply(cfg["train"].get("threads"))
    train, val = data.split("train"), data.split("val")
    whole = Split(torch.cat([train[0], val[0]]), torch.cat([train[1], val[1]]))
    started = time.perf_counter()
    result = run_cv({**cfg, "train": {**cfg["train"], "progress": False}}, data, whole)
    gap = max(np.abs(np.subtract(result.mean_acc, stored["mean_acc"])).max(),
              np.abs(np.subtract(result.mean_loss, stored["mean_loss"])).max())
    if result.epochs != stored["epochs"]:
        sys.exit(f"{member}: the CV chose {result.epochs} epochs again, not the stored {stored['epochs']}")
    save_out_of_fold(member, result.oof, data)
    return (f"{member}: {result.folds} folds, epoch {result.epochs}, largest gap to cv.json's curves {gap:.2g}, "
            f"{time.perf_counter() - started:.0f} s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="GunPoint,ArrowHead,ItalyPowerDemand,OSULeaf,JapaneseVowels,ACSF1")
    p.add_argument("--root", default="benchmarks/results/quick/runs")
    a = p.parse_args(argv)
    for d in a.datasets.split(","):
        for teacher in sorted(Path(a.root).glob(f"teacher-{d}-*")):
            record = json.loads((teacher / "run.json").read_text())
            for name in record.get("members") or ["."]:
                print(backfill((teacher / name).resolve()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
