"""Do the committed results still hold for the present code? Three checks, no new numbers:

1. the bundled quick datasets prepare to the same data (fingerprints of the early benchmark's seed-0 runs);
2. the early benchmark's seed-0 Base and DLF anytime runs, scored again from their checkpoints (copies), give
   exactly their stored test metrics and policy decisions;
3. three quick-suite students (GunPoint, e 0.2, seed 0) retrained from their own config.yaml give the same
   weights, test metrics and config hash: the kd one of the quick sweep, the gdpd one of its re-run with the
   folded chain (quick-gdpd-folded; the quick sweep's own GDPD runs predate that change of rounding), and the gdpd
   one of the know-nothing control's re-run (quick-control-gdpd-folded).

    python benchmarks/recheck_committed.py     # needs the runs/ of benchmarks/results/{early,quick,quick-gdpd-folded,
                                               # quick-control-gdpd-folded} (not in git)
"""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from earlykd import runs
from earlykd.early.assess import evaluate_anytime
from earlykd.train import load_model

RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = ("GunPoint", "ArrowHead", "ItalyPowerDemand", "OSULeaf", "JapaneseVowels", "ACSF1")
STUDENTS = (("quick", "kd-GunPoint-e0.2-truncate-s0-f82fb8d1"),
            ("quick-gdpd-folded", "gdpd-GunPoint-e0.2-truncate-s0-8b4ea86b"),
            ("quick-control-gdpd-folded", "gdpd-GunPoint-e0.2-truncate-s0-b9fb6deb"))


GROUPS = ("anytime-base", "anytime-dlf")


def early_run(dataset: str, group: str) -> Path:
    return RESULTS / "early" / "runs" / dataset / "s0" / group


def missing() -> list[str]:
    """The run directories this check reads that are not here (they are not in git)."""
    needed = [early_run(d, g) for d in DATASETS for g in GROUPS] + [RESULTS / s / "runs" / n for s, n in STUDENTS]
    return [str(path.relative_to(RESULTS.parent.parent)) for path in needed if not (path / "run.json").is_file()]


def main() -> int:
    absent = missing()
    if absent:
        print(f"error: {len(absent)} run directories this check reads are not here (run files are not in git), "
              f"e.g. {absent[0]}; make them with the benchmarks that committed them", file=sys.stderr)
        return 2
    ok, tmp = True, Path(tempfile.mkdtemp())
    for d in DATASETS:
        run = early_run(d, "anytime-base")
        same = runs.load_prepared(runs.read_run(run)[0]["data"]).fingerprint() == \
            load_model(run / "model.safetensors")[1]["data_fingerprint"]
        print(f"data {d}: {'same' if same else 'DIFFERENT'}")
        ok &= same
        for group in GROUPS:
            run = early_run(d, group)
            stored = json.loads((run / "run.json").read_text())
            got = evaluate_anytime(shutil.copytree(run, tmp / d / group), "cpu")
            same = got["test"] == stored["test"] and got["test_policies"] == stored["test_policies"]
            print(f"early {d} {group}: {'same' if same else 'DIFFERENT'}")
            ok &= same
    for sweep, name in STUDENTS:
        run, again = RESULTS / sweep / "runs" / name, tmp / name
        subprocess.run([sys.executable, "-m", "earlykd", "distill", "--config", str(run / "config.yaml"), "--out",
                        str(again), "--no-progress"], check=True, capture_output=True)
        a, b = (json.loads((p / "run.json").read_text()) for p in (run, again))
        wa, wb = (load_file(str(p / "model.safetensors")) for p in (run, again))
        same = a["test"] == b["test"] and a["config_hash"] == b["config_hash"] and all(torch.equal(wa[k], wb[k]) for k in wa)
        print(f"retrained {name}: {'same' if same else 'DIFFERENT'}")
        ok &= same
    shutil.rmtree(tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
