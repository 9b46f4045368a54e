"""`earlykd compare`: a teacher on full series, then each method's student over one or more seeds."""
from __future__ import annotations

import copy
import statistics
from pathlib import Path

ROW = ["run", "method", "earliness", "auc_prc", "accuracy", "fidelity_top1", "seconds_per_epoch", "best_epoch"]
SPREAD = ["auc_prc", "accuracy", "fidelity_top1"]


def row(run) -> dict:
    r = run.record
    return {"run": run.path.name, "method": r["method"] if r["kind"] == "student" else "teacher",
            "earliness": r["earliness"], **r["test"], "seconds_per_epoch": r["seconds_per_epoch"],
            "best_epoch": r["best_epoch"]}


def _check_plan(methods: list[str], seeds: list[int], student_epochs: int | None) -> None:
    from .config import check_seed
    from .errors import check
    check(methods, "compare needs at least one method in --methods, e.g. --methods base,kd")
    twice = sorted({m for m in methods if methods.count(m) > 1})
    check(not twice, f"--methods names {', '.join(twice)} more than once")
    for s in seeds:
        check_seed(s, "--seeds")
    check(len(set(seeds)) == len(seeds), f"--seeds names a seed more than once: {', '.join(map(str, seeds))}")
    check(student_epochs is None or (isinstance(student_epochs, int) and student_epochs >= 1),
          f"--student-epochs must be a positive integer, got {student_epochs!r}")


def method_options(cfg: dict, methods: list[str]) -> dict[str, dict]:
    """Each student's method options: the configured method's options go to that method when it is compared,
    else to every method; each method checks them (unknown options, bad values) before anything trains."""
    from .distill.base import method_class
    name, options = cfg["method"]["name"], cfg["method"]["options"]
    out = {m: options if name not in methods or m == name else {} for m in methods}
    for m in methods:
        method_class(m).resolve_options(out[m])
    return out


def run_all(cfg: dict, methods: list[str], seeds: list[int], student_epochs: int | None, resume: bool):
    """-> (root directory, teacher run, {method: [student run per seed]}). `train.select` applies to the
    teacher only; students keep their own rule (validation loss, after the warm-up). Every student's settings
    are checked before the teacher trains."""
    from . import runs
    from .config import resolve
    _check_plan(methods, seeds, student_epochs)
    options = method_options(cfg, methods)
    root = Path(cfg["out"] or Path("runs") / f"compare-{Path(str(cfg['data']['name'])).stem}")
    plan = []
    for m in methods:
        for seed in seeds:
            s_cfg = copy.deepcopy(cfg)
            s_cfg.update(out=str(root / (m if len(seeds) == 1 else f"{m}-s{seed}")), teacher=str(root / "teacher"))
            s_cfg["method"] = {"name": m, "options": options[m]}
            s_cfg["train"]["seed"] = seed
            s_cfg["train"]["select"] = None  # train.select is the teacher's rule; students: validation loss
            if student_epochs:
                s_cfg["train"]["epochs"] = student_epochs
            plan.append((m, resolve(base=s_cfg)))
    teacher_cfg = copy.deepcopy(cfg)
    teacher_cfg.update(out=str(root / "teacher"), teacher=None, method={"name": "base", "options": {}})
    teacher = runs.train_teacher(teacher_cfg, resume=resume)
    students: dict[str, list] = {}
    for m, s_cfg in plan:
        s_cfg = resolve(base={**s_cfg, "teacher": str(teacher.path)})
        students.setdefault(m, []).append(runs.distill(s_cfg, resume=resume))
    return root, teacher, students


def spread_rows(teacher, students: dict) -> tuple[list[dict], list[str]]:
    """One row per method: mean and standard deviation over seeds of the test metrics."""
    rows = [{"method": "teacher", "earliness": 1.0, "seeds": 1, **{m: teacher.metrics.get(m) for m in SPREAD},
             "seconds_per_epoch": teacher.record["seconds_per_epoch"]}]
    for method, found in students.items():
        out = {"method": method, "earliness": found[0].record["earliness"], "seeds": len(found),
               "seconds_per_epoch": statistics.fmean(r.record["seconds_per_epoch"] for r in found)}
        for m in SPREAD:
            values = [r.metrics[m] for r in found if r.metrics.get(m) is not None]
            out[m] = statistics.fmean(values) if values else None
            out[f"{m}_sd"] = statistics.stdev(values) if len(values) > 1 else None
        rows.append(out)
    columns = ["method", "earliness", "seeds"] + [c for m in SPREAD for c in (m, f"{m}_sd")] + ["seconds_per_epoch"]
    return rows, columns
