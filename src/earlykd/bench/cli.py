"""CLI subcommands of the benchmark harness (bench, report)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import EarlykdError

LIST = "space- or comma-separated; default: the suite's"


def add_commands(sub, commands: dict) -> None:
    """Add subparsers to `sub` and their handlers to `commands` (name -> function(args))."""
    p = sub.add_parser("bench", help="run a benchmark suite (resumable; results in SQLite)",
                       description="Expand a suite into teacher and student runs and run those not yet stored. "
                       "Re-running the same command skips finished runs and resumes interrupted ones.")
    p.add_argument("--suite", required=True, help="smoke, quick, quick-control, paper-cpu, paper-cpu-control, paper (see docs/protocol.md) or a suite YAML file")
    p.add_argument("--datasets", nargs="+", help=LIST + "; a .npz/.csv training file needs --test-path")
    p.add_argument("--test-path", help="test file for a .npz/.csv file given in --datasets")
    p.add_argument("--methods", nargs="+", help=LIST + "; 'all': every registered method")
    p.add_argument("--earliness", nargs="+", help=LIST)
    p.add_argument("--seeds", nargs="+", help=LIST)
    p.add_argument("--archive", help="root of a local UCR/UEA archive (the paper suite takes all its datasets)")
    p.add_argument("--out", help="sweep directory (default benchmarks/results/<suite>)")
    p.add_argument("--db", help="results database (default <out>/results.db)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run, e.g. train.epochs=5")
    p.add_argument("--executor", default="local", help="local (default) or ray")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument("--workers", type=int, help="parallel jobs (default 1; 0 = in this process)")
    p.add_argument("--threads", type=int, help="torch threads per job (default cores // workers)")
    p.add_argument("--gpus", type=float, default=0, help="GPUs per Ray task (default 0)")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and exit")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p = sub.add_parser("report", help="tables (md/csv/tex), plots and one HTML file from a sweep directory")
    p.add_argument("dir", help="sweep directory (holding results.db)")
    p.add_argument("--db", help="results database (default <dir>/results.db)")
    p.add_argument("--out", help="where to write (default: the sweep directory)")
    commands.update(bench=cmd_bench, report=cmd_report)


def _list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def cmd_bench(a: argparse.Namespace) -> None:
    from ..train.checkpoint import writable_dir
    from .executors import check_executor, make_executor
    from .grid import expand
    from .store import Store
    from .suites import FileData, get_suite
    from .sweep import finished_points, is_stored, run_sweep
    suite = get_suite(a.suite)
    datasets = _list(a.datasets)
    if a.test_path:
        if not datasets or len(datasets) != 1:
            raise EarlykdError("--test-path goes with one training file in --datasets (several: a suite file)")
        datasets = [FileData.of({"name": datasets[0], "test_path": a.test_path}, "--datasets")]
    jobs = expand(suite, datasets, _list(a.methods), _list(a.earliness), _list(a.seeds), a.archive, a.set)
    check_executor(a.executor, a.workers, a.threads, a.address, a.gpus)   # a dry run answers as a real one would
    root = Path(a.out or Path("benchmarks") / "results" / suite.name)
    if a.dry_run:   # what a real run would do: stored jobs are skipped, finished run directories are read back,
        db = Path(a.db) if a.db else root / "results.db"   # a grid job trains each of its points not yet finished
        stored_keys = Store(db, create=False).keys() if db.is_file() else set()
        stored = {j.key for j in jobs if is_stored(j, stored_keys, root)}
        done = {j.key: finished_points(j, root) for j in jobs if j.key not in stored}
        for job in jobs:
            note = ("  (stored)" if job.key in stored else "  (finished in its run directory)" if all(done[job.key])
                    else "")
            print(f"{job.kind:8s} {job.name}" + (f"  grid {job.grid}" if job.grid else "") + note)
        found = sum(all(d) for d in done.values())
        print(f"{len(jobs)} jobs ({sum(j.kind == 'teacher' for j in jobs)} teachers), {len(jobs) - len(done)} stored, "
              f"{found} finished in run directories; to train: {sum(not x for d in done.values() for x in d)} runs "
              f"-> {root}")
        return
    # The cluster and a database named apart are opened before --out is made: a refusal leaves nothing behind.
    executor = make_executor(a.executor, a.workers, a.threads, a.address, a.gpus)
    try:
        store = Store(a.db) if a.db else None
        try:
            writable_dir(root)
            store = store or Store(root / "results.db")
            counts = run_sweep(jobs, store, executor, root, progress=a.progress)
        finally:
            if store is not None:
                store.close()
    except KeyboardInterrupt:
        print("earlykd: interrupted; re-run the same command to continue the sweep", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        executor.close()
    print(f"{counts['total']} runs: {counts['ran']} trained, {counts['ingested']} recovered from run directories, "
          f"{counts['stored']} already stored ({store.path})")
    print(f"report: earlykd report {root}")


def cmd_report(a: argparse.Namespace) -> None:
    from ..report.html import write_report
    from ..train.checkpoint import writable_dir
    root = Path(a.dir)
    if not root.is_dir():
        raise EarlykdError(f"sweep directory not found: {root}")
    out = writable_dir(Path(a.out) if a.out else root)
    written = write_report(Path(a.db) if a.db else root / "results.db", out)
    print(f"written: {len(written)} files in {out}, open {out / 'report.html'}", file=sys.stderr)
