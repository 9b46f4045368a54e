"""`earlykd early`: an anytime student and calibrated stopping policies from a teacher run."""
from __future__ import annotations

import sys

from ..errors import EarlykdError

EARLY_BASE = {"prefix": {"mode": "truncate"}}   # `early`'s own default, under --config, flags and --set
OPTIONS = ("method", "arch", "layers", "hidden", "epochs", "batch_size", "lr", "seed", "device", "threads", "out",
           "mode")


def add_commands(sub, commands: dict) -> None:
    """Add the `early` subparser to `sub` and its handler to `commands`."""
    from ..cli import add_training_args
    p = sub.add_parser("early", help="train one anytime student on prefixes of many lengths; calibrate when to stop",
                       description="One student for every prefix length, distilled from a teacher run with any "
                       "registered method; stopping policies (see earlykd.decide) are calibrated on validation only.")
    p.add_argument("--teacher", help="teacher run directory (or `teacher` in --config, as an earlier run's "
                   "config.yaml names it)")
    p.add_argument("--method", help="distillation method (default base; see `earlykd methods`)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="method option")
    p.add_argument("--policy",
                   help="stopping policies to calibrate, comma-separated; the first is the run's default "
                   "(built in: threshold, calibrated, elects, uncertainty; plugins add more). auto (the default "
                   "unless early.policies of --config names some): every registered policy, the run's default "
                   "being the one of highest cross-validated validation HM (each validation fold decided by the policy "
                   "calibrated on the others)")
    p.add_argument("--sampling", choices=["uniform", "aria"],
                   help="how batches draw (series, earliness): uniform (default: one level per batch, every series "
                   "once per epoch) or aria (region-adaptive, see docs/early.md; settings: --aria or early.aria.*)")
    p.add_argument("--aria", action="append", default=[], metavar="KEY=VALUE",
                   help="ARIA setting: bins, groups, clusters, eps, beta, temperature, warmup_share, weights, clip, "
                   "normalise")
    p.add_argument("--levels", help="earliness levels, comma-separated (default 0.05,0.10,...,1.0; 1.0 always added)")
    p.add_argument("--mode", choices=["stretch", "truncate"],
                   help="prefix mode (default truncate for an anytime student: a checkpoint's prefix keeps the "
                   "series' time scale; see docs/early.md)")
    p.add_argument("--arch", help="student architecture (default: the teacher's)")
    p.add_argument("--layers", type=int, help="student depth")
    p.add_argument("--hidden", type=int, help="student width")
    add_training_args(p)
    p.add_argument("--config", action="append", default=[], metavar="YAML", help="config file(s), applied in order")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted config override")
    p.add_argument("--out", help="run directory (default runs/anytime-<method>-<data>-<arch>-s<seed>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="hide progress bars")
    commands.update(early=cmd_early)


def cmd_early(a) -> None:
    from .. import api
    from .run import train_early
    options = {k: getattr(a, k) for k in OPTIONS if getattr(a, k, None) is not None}
    if a.progress is not None:
        options["progress"] = a.progress
    sets = list(a.set)
    for item in a.option:
        if "=" not in item:
            raise EarlykdError(f"--option expects key=value, got '{item}'")
        sets.append("method.options." + item)
    for item in a.aria:
        if "=" not in item:
            raise EarlykdError(f"--aria expects key=value, got '{item}'")
        sets.append("early.aria." + item)
    if a.sampling is not None:
        sets.append(f"early.sampling={a.sampling}")
    cfg = api.make_config(a.config, sets, base=EARLY_BASE, **options, **({"teacher": a.teacher} if a.teacher else {}))
    policies = None if a.policy is None else [p.strip() for p in a.policy.split(",") if p.strip()]  # auto: all
    run = train_early(cfg, a.levels, policies, a.resume)
    held_out = run.record["calibration"]["on"]   # validation, or out-of-fold (early.crossfit)
    val = run.record["policies_val"]
    rows = [f"{name:12s} test HM {s['hm']:.4f}  accuracy {s['accuracy']:.4f}  earliness {s['earliness']:.4f}  "
            f"({held_out} HM {val[name]['hm']:.4f}, cross-validated "
            f"{'-' if val[name].get('cv_hm') is None else format(val[name]['cv_hm'], '.4f')})"
            for name, s in run.record["test_policies"].items()]
    print(f"test AUC-PRC averaged over {len(run.record['earliness'])} levels: {run.record['test']['auc_prc']:.4f}")
    print("\n".join(rows))
    print(f"default policy: {run.record['default_policy']} ({run.record['default_policy_by']})")
    print(f"run directory: {run.path}")
    note = grid_note(run.record, cfg["early"].get("length"))
    if note:
        print(f"earlykd: note: {note}", file=sys.stderr)


def grid_note(record: dict, length_set) -> str | None:
    """A line for a truncated anytime student whose grid (the teacher's, by default) is coarser than its series:
    its first checkpoint sees few steps, and the series' own length is the option that keeps every sample."""
    from ..prefix import prefix_steps   # here: building the parser imports no torch
    grid, samples = record["data"]["length"], record["data"]["reference_length"]
    if length_set is not None or record["prefix_mode"] != "truncate" or samples <= grid:
        return None
    first = record["earliness"][0]
    return (f"the series have {samples} samples and the student's grid {grid} steps, so at the first checkpoint "
            f"(e {first:g}) it sees {prefix_steps(first, grid)} steps; --set early.length={samples} keeps every sample "
            "(slower), which validation preferred on three of the four quick datasets longer than 100 samples "
            "(docs/early.md)")
