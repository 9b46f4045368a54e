"""Run a grid: skip stored runs, ingest finished run directories, resume interrupted ones, teachers
before their students, and store each result the moment it lands."""
from __future__ import annotations

import contextlib
import copy
import math
import time
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path

from ..errors import EarlykdError, check
from ..progress import progress as progress_bar
from .grid import Job
from ..schema import METRICS
from .store import Store

RUNS = "runs"


def _point_dirs(job: Job, root: Path) -> list[tuple[Path, dict]]:
    base = root / RUNS / job.name
    return [(base / sub if sub else base, options) for sub, options in job.points()]


def finished_points(job: Job, root: Path) -> list[bool]:
    """Per run of the job (one, or one per grid point): whether its directory holds a finished run."""
    from ..runs import RUN_FILE
    return [(path / RUN_FILE).is_file() for path, _ in _point_dirs(job, root)]


def is_stored(job: Job, stored: set, root: Path) -> bool:
    """Whether the sweep can skip the job: its row is stored and, for a teacher, whose run directory its students
    and the benchmarks built on it read, that directory holds it too (a fresh clone has the rows, not the runs)."""
    return job.key in stored and (job.kind != "teacher" or all(finished_points(job, root)))


def collect(job: Job, root: Path) -> dict | None:
    """The job's record if all its runs are finished (reads only). With an option grid, the run of
    lowest validation loss is kept and the choice recorded."""
    from ..runs import RUN_FILE, read_run
    found = []
    for path, options in _point_dirs(job, root):
        if not (path / RUN_FILE).is_file():
            return None
        record = read_run(path)[1]
        val_loss = record.get("val", {}).get("val_loss")
        found.append((math.inf if val_loss is None else val_loss, path, options, record))
    _, path, options, record = min(found, key=lambda item: item[0])  # ties: the first grid point
    record = {**record, "run_dir": str(path.relative_to(root)), "options": options}
    if job.grid:
        record["selected"] = {k: options[k] for k in job.grid}
        record["grid"] = [{"options": o, "val_loss": v, "run_dir": str(p.relative_to(root))} for v, p, o, _ in found]
    if job.kind == "teacher":
        from ..teacher import Teacher
        record["teacher_id"] = Teacher.load(path).id  # the id runs.distill gives its students
    return record


def run_job(job: Job, root: str) -> dict:
    """Train what the job still lacks, resuming an interrupted run, then collect it (runs in a worker)."""
    from .. import runs
    root = Path(root)
    for path, options in _point_dirs(job, root):
        if (path / runs.RUN_FILE).is_file():
            continue
        cfg = copy.deepcopy(job.cfg)
        cfg["out"], cfg["method"]["options"] = str(path), options
        resume = runs.unfinished(path)
        if job.kind == "teacher":
            runs.train_teacher(cfg, resume=resume)
        else:
            cfg["teacher"] = str(root / RUNS / job.teacher)
            runs.distill(cfg, resume=resume)
    record = collect(job, root)
    check(record is not None, f"{job.name}: finished without a run record")
    return record


def to_row(job: Job, record: dict) -> dict:
    test, val = record["test"], record.get("val") or {}
    row = {"dataset": job.dataset, "method": job.method, "earliness": job.earliness, "prefix_mode": job.prefix_mode,
           "seed": job.seed, "teacher_arch": record["teacher_arch"], "student_arch": record["student_arch"],
           **{m: test.get(m) for m in METRICS}}
    for key in ("epochs", "train_seconds", "seconds_per_epoch", "peak_memory_mb", "config_hash", "version",
                "teacher_id", "best_epoch", "warmup", "options", "selected", "run_dir"):
        row[key] = record.get(key)
    row.update(val_loss=val.get("val_loss"), val_acc=val.get("val_acc"), suite=job.suite, job_hash=job.job_hash,
               finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
               record={k: v for k, v in record.items() if k != "history"})  # per-epoch history stays in run.json
    return row


@contextlib.contextmanager
def _lock(root: Path):
    """One sweep per directory at a time; the OS drops the lock when the process dies."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock
        yield
        return
    with open(root / ".sweep.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise EarlykdError(f"another sweep is running in {root}") from None
        yield


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:300]


def run_sweep(jobs: list[Job], store: Store, executor, root: str | Path, progress: bool = True) -> dict:
    """Run every job not yet stored; returns counts. Failed jobs are reported, the rest go on."""
    root, db_dir = Path(root).resolve(), store.path.resolve().parent
    # one sweep per directory and per database: a second sweep on a shared --db would train everything again
    with _lock(root), (_lock(db_dir) if db_dir != root else contextlib.nullcontext()):
        done, todo, counts = store.keys(), [], {"total": len(jobs), "stored": 0, "ingested": 0, "ran": 0}
        for job in jobs:
            if is_stored(job, done, root):
                counts["stored"] += 1
            elif job.key not in done and (record := collect(job, root)) is not None:  # the row never made it
                store.insert(to_row(job, record))
                counts["ingested"] += 1
            else:   # a stored teacher without its run directory is trained again, its row kept
                job.cfg["train"]["threads"] = executor.threads
                todo.append(job)
        pending = {j.name for j in todo}
        queue = [j for j in todo if j.kind == "teacher" or j.teacher not in pending]
        waiting = [j for j in todo if j.kind == "student" and j.teacher in pending]
        running, failed = {}, []
        bar = progress_bar(total=len(jobs), initial=len(jobs) - len(todo), unit="run", desc="sweep",
                           enabled=progress, lines=len(jobs), dynamic_ncols=True)
        try:
            while queue or running:
                while queue and len(running) < executor.capacity:
                    job = queue.pop(0)
                    running[executor.submit(run_job, job, str(root))] = job
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    job = running.pop(future)
                    try:
                        store.insert(to_row(job, future.result()))
                    except Exception as exc:  # one failed job must not stop the sweep
                        failed.append((job, exc))
                        bar.write(f"failed: {job.name}: {_one_line(exc)}")
                        continue
                    counts["ran"] += 1
                    bar.update()
                    bar.set_postfix_str(job.name, refresh=False)
                    if job.kind == "teacher":
                        queue += [j for j in waiting if j.teacher == job.name]
                        waiting = [j for j in waiting if j.teacher != job.name]
        except KeyboardInterrupt:
            executor.abort()   # before the lock goes: a re-run must not meet this sweep's workers in its run directories
            raise
        finally:
            bar.close()
    if failed or waiting:
        first = f"{failed[0][0].name}: {_one_line(failed[0][1])}" if failed else ""
        raise EarlykdError(f"{len(failed)} job(s) failed and {len(waiting)} skipped for want of a teacher "
                           f"(first: {first}); fix and re-run the same command to finish the grid")
    return counts
