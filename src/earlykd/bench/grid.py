"""Expand a suite into jobs: one teacher per dataset, then students that depend on it."""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import config_hash, merge, resolve
from ..errors import EarlykdError, check, did_you_mean
from .suites import PAPER_BUNDLED, FileData, Suite


@dataclass
class Job:
    kind: str                 # teacher | student
    dataset: str
    method: str               # 'teacher' for teacher jobs
    earliness: float
    prefix_mode: str
    seed: int
    cfg: dict                 # resolved config of one run; the sweep fills in out and teacher
    job_hash: str             # settings that change results (no paths, threads or devices)
    name: str                 # run directory under DIR/runs
    teacher: str | None = None  # the teacher job's name (students)
    suite: str = ""
    grid: dict = field(default_factory=dict)  # option -> values, chosen by validation loss

    @property
    def key(self) -> tuple:
        return (self.dataset, self.method, self.earliness, self.prefix_mode, self.seed, self.job_hash)

    def points(self) -> list[tuple[str, dict]]:
        """(sub-directory, method options) for each grid point; ('', options) without a grid."""
        base = self.cfg["method"]["options"]
        if not self.grid:
            return [("", base)]
        names = sorted(self.grid)
        return [("_".join(f"{n}-{v}" for n, v in zip(names, values)), {**base, **dict(zip(names, values))})
                for values in itertools.product(*(self.grid[n] for n in names))]


def _unique(items) -> list:
    return list(dict.fromkeys(items))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(name).name)


def default_datasets(archive: str | None) -> list[str]:
    if archive:
        check(Path(archive).is_dir(), f"archive folder not found: {archive}")
        return sorted(p.name for p in Path(archive).iterdir() if p.is_dir() and not p.name.startswith("."))
    return list(PAPER_BUNDLED)


def check_dataset(name, archive: str | None) -> None:
    if isinstance(name, FileData):
        return  # checked when read
    check(Path(name).suffix.lower() not in (".npz", ".npy", ".csv"),
          f"{name}: a data file needs its test file: --test-path, or a suite file entry with test_path")
    if archive:
        check(Path(archive).is_dir(), f"archive folder not found: {archive}")
        check((Path(archive) / name).is_dir(), f"dataset '{name}' not found in archive {archive}")
        return
    from ..data import bundled_datasets
    known = bundled_datasets()
    if name not in known:
        hint = did_you_mean(name, known, f"bundled: {', '.join(known)}; or pass --archive PATH")
        raise EarlykdError(f"unknown dataset '{name}' ({hint})")


def _earliness(value) -> float:
    try:
        e = float(value)
    except (TypeError, ValueError):
        raise EarlykdError(f"earliness must be a number in (0, 1], got {value!r}") from None
    check(0 < e <= 1, f"earliness must be in (0, 1], got {value!r}")
    return e


def _seed(value) -> int:
    try:
        s = int(value)
    except (TypeError, ValueError):
        raise EarlykdError(f"seed must be a non-negative integer, got {value!r}") from None
    check(s >= 0 and str(value).strip().lstrip("+") == str(s), f"seed must be a non-negative integer, got {value!r}")
    return s


def method_names(names) -> list[str]:
    """Method names as given; none, or 'all' (on the command line or in a suite file), is every registered one."""
    from ..distill import METHODS
    names = list(names or [])
    return sorted(METHODS) if names in ([], ["all"]) else names


def check_method_options(suite: Suite) -> None:
    """The suite's `options` and `grids` against the methods' own options: one line naming the suite file.
    A grid option must be an option of at least one of the suite's own methods (it applies to those that have it)."""
    from ..distill import method_class
    where = suite.source or f"suite {suite.name}"
    try:
        own = method_names(suite.methods)
        check("method" not in (suite.teacher or {}), "teacher: a teacher is trained without distillation; 'method' "
                                                     "is for students (student: or options:)")
        for m, options in suite.options.items():
            check(options is None or isinstance(options, dict), f"options: {m}: must be a mapping, got {options!r}")
            method_class(m).resolve_options(options or {})
            check(m in own, f"options: '{m}' is not one of the suite's methods ({', '.join(own)})")
            for key in sorted(set(options or {}) & set(suite.grids)):
                raise EarlykdError(f"options: {m}: '{key}' is also a grid option; the grid would override it, keep one")
        for key, values in suite.grids.items():
            owners = [m for m in own if key in method_class(m).defaults]
            if not owners:
                known = sorted({k for m in own for k in method_class(m).defaults})
                methods = " or ".join(own) if suite.methods else "any method"
                raise EarlykdError(f"grid option '{key}' is not an option of {methods} "
                                   f"({did_you_mean(str(key), known, 'known: ' + ', '.join(known))})")
            check(isinstance(values, (list, tuple)) and len(values) > 0,
                  f"grid option '{key}' needs a non-empty list of values, got {values!r}")
            check(len({repr(float(v)) if isinstance(v, (int, float)) else repr(v) for v in values}) == len(values),
                  f"grid option '{key}' lists a value twice: {list(values)}")
            for m in owners:
                for value in values:
                    method_class(m).resolve_options({key: value})
    except EarlykdError as exc:
        raise EarlykdError(f"{where}: {exc}") from None


# what the sweep sets per job: a --set on it would change every run while the rows keep the grid's labels
PER_JOB = ("data.name", "data.archive", "data.test_path", "data.label_column", "method", "prefix.earliness",
           "train.seed", "teacher", "out")


def check_sets(sets) -> None:
    for item in sets:
        key = str(item).split("=", 1)[0].strip()
        check(not any(key == k or key.startswith(k + ".") for k in PER_JOB),
              f"--set {key}: the sweep sets it per job; choose datasets, methods, earliness and seeds with --datasets, "
              "--methods, --earliness and --seeds, and method options in a suite file's options or grids")


_BUILT: set[str] = set()


def check_model(model: dict) -> None:
    """A model config builds (architecture, depth, width), before anything trains; a teacher may list architectures.
    Each distinct config is built once per process."""
    from ..models import build_model
    key = repr((model["arch"], model["layers"], model["hidden"]))
    if model["arch"] is None or key in _BUILT:
        return
    for arch in str(model["arch"]).split(","):
        build_model(arch.strip(), 1, 2, model["layers"], model["hidden"])
    _BUILT.add(key)


def _data_content(d) -> list[str]:
    """Digests of a user's data files: a file changed since its runs gives new jobs, not stored results."""
    from ..rundir import file_digest
    if not isinstance(d, FileData):
        return []
    paths = [p for p in (d.name, d.test_path) if p]
    for p in paths:
        check(Path(p).is_file(), f"data file not found: {p}")
    return [file_digest(Path(p)) for p in paths]


def _config(suite: Suite, role: dict, overrides: dict, sets) -> dict:
    base = merge(resolve(base=suite.common), role)
    return resolve(overrides={**overrides, "train.progress": False}, sets=list(sets), base=base)


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def expand(suite: Suite, datasets=None, methods=None, earliness=None, seeds=None, archive: str | None = None,
           sets=()) -> list[Job]:
    """All jobs of the grid, teachers first; raises EarlykdError on any bad input before anything runs."""
    from ..distill import method_class
    datasets = _unique(datasets or suite.datasets or default_datasets(archive))
    check(datasets, f"no datasets found in archive {archive}")
    for d in datasets:
        check_dataset(d, archive)
    methods = _unique(method_names(methods or suite.methods))
    classes = {m: method_class(m) for m in methods}
    check_method_options(suite)
    check_sets(sets)
    earliness, seeds = earliness or suite.earliness, seeds if seeds is not None and len(seeds) else suite.seeds
    check(earliness, f"suite {suite.name} names no earliness levels (earliness: [0.2, 0.4, ...], or --earliness)")
    check(seeds is not None and len(seeds) > 0, f"suite {suite.name} names no seeds (seeds: [0, 1, 2], or --seeds)")
    earliness = _unique(_earliness(e) for e in earliness)
    seeds = _unique(_seed(s) for s in seeds)
    teachers, students = [], []
    for d in datasets:
        data = {"data.name": d, "data.archive": archive}
        if isinstance(d, FileData):
            data = {"data.name": d.name, "data.test_path": d.test_path, "data.label_column": d.label_column}
        label = d.label if isinstance(d, FileData) else d
        t_cfg = _config(suite, suite.teacher, {**data, "method.name": "base", "train.seed": 0,
                                               "prefix.earliness": 1.0}, sets)
        check_model(t_cfg["model"])
        content = _data_content(d)
        t_hash = _digest(config_hash(t_cfg), content) if content else config_hash(t_cfg)
        mode = t_cfg["prefix"]["mode"]
        teacher = Job("teacher", label, "teacher", 1.0, mode, 0, t_cfg, t_hash, f"teacher-{_safe(label)}-{t_hash[:8]}",
                      suite=suite.name)
        teachers.append(teacher)
        for seed, e, m in itertools.product(seeds, earliness, methods):
            cls = classes[m]
            over = {**data, "method.name": m, "method.options": suite.options.get(m), "prefix.earliness": e,
                    "train.seed": seed}
            cfg = _config(suite, suite.student, over, sets)
            check_model(cfg["model"])   # arch None: the teacher's (lead) architecture, checked above
            grid = {k: list(v) for k, v in suite.grids.items() if k in cls.defaults}
            job = Job("student", label, m, e, cfg["prefix"]["mode"], seed, cfg, "", "", teacher.name, suite.name, grid)
            for _, options in job.points():
                cls.resolve_options(options)
            job.job_hash = _digest(config_hash(cfg, drop=("out", "teacher")), t_hash, grid)
            job.name = f"{m}-{_safe(label)}-e{e:g}-{job.prefix_mode}-s{seed}-{job.job_hash[:8]}"
            students.append((seed, datasets.index(d), e, methods.index(m), job))
    return teachers + [j for *_, j in sorted(students, key=lambda t: t[:4])]
