"""Without held-out data, which state of an anytime student to keep: the latest epoch or the mean of the weights
over the last quarter of the epochs (`earlykd.early.crossfit.AveragingTrainer`)? Measured on the validation split,
which neither uses: each student of the early benchmark's validation-calibrated sweep (same config, teacher and
seed; trained on the training split) is trained once more, and both states are scored on validation at every
checkpoint (norm rows refitted on the training views for each). Test data are not read.

    python benchmarks/crossfit_average.py [--datasets ...] [--methods base,dlf] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

DATASETS = ("GunPoint", "ArrowHead", "ItalyPowerDemand", "OSULeaf", "JapaneseVowels", "ACSF1")
RUNS = Path("benchmarks/results/early/runs")


def score(model, split) -> tuple[float, float]:
    """Mean over checkpoints of validation cross-entropy and accuracy, in eval mode with the levels' rows."""
    logits = torch.from_numpy(split.logits(model.eval()))
    ce = [F.cross_entropy(level, split.y).item() for level in logits]
    acc = (logits.argmax(-1) == split.y).float().mean(1)
    return float(np.mean(ce)), float(acc.mean())


def one(dataset: str, seed: int, method: str) -> dict:
    from earlykd import runs, threads
    from earlykd.early import crossfit
    from earlykd.early.anytime import LevelSplit, new_distiller
    from earlykd.models import fit_level_stats
    from earlykd.teacher import Teacher
    threads.apply(1)
    cfg = yaml.safe_load((RUNS / dataset / f"s{seed}" / f"anytime-{method}" / "config.yaml").read_text())
    data = runs.load_prepared(cfg["data"])
    teacher = Teacher.load(cfg["teacher"])
    outputs = teacher.outputs(runs.load_prepared(teacher.cfg["data"]), torch.device("cpu")) if method != "base" else None
    levels, mode, tc = cfg["prefix"]["earliness"], cfg["prefix"]["mode"], cfg["train"]
    train = LevelSplit.of(data, "train", levels, mode, None, outputs["train"] if outputs else None)
    val = LevelSplit.of(data, "val", levels, mode, None)
    kept = {}

    class Recording(crossfit.AveragingTrainer):
        def _select(self, row, train_loss):
            super()._select(row, train_loss)
            if self.epoch == self.cfg["epochs"] - 1:
                kept["latest"] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    torch.manual_seed(tc["seed"])
    distiller = new_distiller(train, data.n_classes, method, cfg["method"]["options"], cfg["model"], tc, True)
    Recording(distiller, {**tc, "patience": None}, torch.device("cpu")).fit(train, train.subset(np.arange(0)))
    out = {"dataset": dataset, "seed": seed, "method": method}
    for name, state in (("average", None), ("latest", kept["latest"])):
        if state is not None:
            distiller.load_state_dict(state)
        fit_level_stats(distiller.student, train.views)
        out[f"{name}_ce"], out[f"{name}_acc"] = score(distiller.student, val)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--methods", default="base,dlf")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default="benchmarks/results/early/crossfit_average.json")
    a = p.parse_args(argv)
    out = Path(a.out)
    done = json.loads(out.read_text()) if out.is_file() else []
    have = {(r["dataset"], r["seed"], r["method"]) for r in done}
    for d in a.datasets.split(","):
        for m in a.methods.split(","):
            for s in map(int, a.seeds.split(",")):
                if (d, s, m) not in have:
                    done.append(one(d, s, m))
                    out.write_text(json.dumps(done, indent=1))
                    r = done[-1]
                    print(f"{d} s{s} {m}: val CE latest {r['latest_ce']:.3f} average {r['average_ce']:.3f}; "
                          f"acc latest {r['latest_acc']:.3f} average {r['average_acc']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
