"""Benchmark harness: grid expansion, the SQLite store, crash recovery, executors, reports."""
from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import assert_clean_error, run_cli
from earlykd.bench.executors import InlineExecutor, LocalExecutor
from earlykd.bench.grid import expand
from earlykd.bench.store import COLUMNS, PROTOCOL, Store, required
from earlykd.bench.suites import SUITES, Suite, get_suite, load_suite
from earlykd.bench.sweep import run_sweep
from earlykd.errors import EarlykdError

SUITE_FILES = Path(__file__).resolve().parents[1] / "benchmarks" / "suites"   # the committed suite files
TINY = ["model.hidden=8", "model.layers=1", "data.length=32", "train.epochs=2", "train.batch_size=8"]
METRICS = ["auc_prc", "average_precision", "accuracy", "roc_auc", "nll", "ece", "fidelity_top1", "fidelity_kl"]


def tiny_jobs(methods=("base", "kd"), seeds=(0,), sets=()):
    return expand(get_suite("smoke"), ["UnitTest"], list(methods), [0.5], list(seeds), sets=TINY + list(sets))


def sweep(root: Path, jobs, executor=None) -> list[dict]:
    executor = executor or InlineExecutor(torch.get_num_threads())
    root.mkdir(parents=True, exist_ok=True)
    store = Store(root / "results.db")
    try:
        run_sweep(jobs, store, executor, root, progress=False)
        return store.rows()
    finally:
        store.close()
        executor.close()


class NoRun:
    """An executor that fails the test if anything is trained."""
    capacity, threads = 1, 1

    def submit(self, fn, *args):
        raise AssertionError(f"unexpected training: {args[0].name}")

    def close(self):
        pass


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    return root, sweep(root, tiny_jobs())


# -- grid -----------------------------------------------------------------------------------------

def test_expand_grid_teachers_first_and_dependencies():
    jobs = expand(get_suite("smoke"), ["UnitTest", "GunPoint"], ["base", "kd", "fitnets"], [0.4, 0.8], [0, 1])
    teachers = [j for j in jobs if j.kind == "teacher"]
    students = [j for j in jobs if j.kind == "student"]
    assert len(teachers) == 2 and jobs[:2] == teachers
    assert len(students) == 2 * 3 * 2 * 2
    assert {j.teacher for j in students} == {t.name for t in teachers}
    assert all(t.method == "teacher" and t.earliness == 1.0 and t.seed == 0 for t in teachers)
    assert all(t.cfg["train"]["seed"] == 0 for t in teachers)
    assert all(s.cfg["train"]["seed"] == s.seed and s.cfg["prefix"]["earliness"] == s.earliness for s in students)
    assert len({j.name for j in jobs}) == len({j.key for j in jobs}) == len(jobs)
    again = expand(get_suite("smoke"), ["UnitTest", "GunPoint"], ["base", "kd", "fitnets"], [0.4, 0.8], [0, 1])
    assert [j.job_hash for j in again] == [j.job_hash for j in jobs]  # deterministic, no paths or times
    changed = expand(get_suite("smoke"), ["UnitTest"], ["base"], [0.4], [0], sets=["train.epochs=5"])
    assert changed[0].job_hash != teachers[0].job_hash and changed[1].job_hash not in {j.job_hash for j in jobs}


def test_suites_follow_the_protocol():
    quick = SUITES["quick"]
    assert quick.datasets == ("GunPoint", "ArrowHead", "ItalyPowerDemand", "OSULeaf", "JapaneseVowels", "ACSF1")
    assert quick.earliness == (0.2, 0.4, 0.6, 0.8) and len(quick.seeds) == 3
    assert set(quick.methods) >= {"base", "kd", "fitnets", "gdpd"}
    paper = expand(SUITES["paper"], ["GunPoint"], ["base", "kd", "fitnets"], [0.4], None)
    students = [j for j in paper if j.kind == "student"]
    assert len(students) == 3 * 5 and all(j.prefix_mode == "stretch" for j in paper)
    assert all(j.cfg["train"]["epochs"] == 600 for j in paper)
    assert {j.method: j.grid for j in students} == {"base": {}, "kd": {"weight": [0.1, 1, 10]},
                                                     "fitnets": {"weight": [0.1, 1, 10]}}
    assert len(students[1].points()) == 3


@pytest.mark.parametrize("path", sorted(SUITE_FILES.glob("*.yaml")), ids=lambda path: path.name)
def test_the_committed_suite_files_expand(path):
    jobs = expand(load_suite(path))
    assert jobs[0].kind == "teacher" and any(job.kind == "student" for job in jobs)


def test_paper_gpu_control_differs_from_paper_in_its_teacher_alone():
    control = load_suite(SUITE_FILES / "paper-gpu-control.yaml")
    real, know_nothing = (expand(s, ["BasicMotions"], ["kd", "gdpd"], [0.2], [0]) for s in (SUITES["paper"], control))
    assert [(j.cfg, j.grid) for j in real[1:]] == [(j.cfg, j.grid) for j in know_nothing[1:]]
    assert know_nothing[0].cfg["train"] == {**real[0].cfg["train"], "epochs": 1, "lr": 1e-9}


@pytest.mark.parametrize("args,needle", [
    (["--suite", "nope"], "unknown suite"),
    (["--suite", "smoke", "--datasets", "GunPont"], "GunPoint"),
    (["--suite", "smoke", "--methods", "kdd"], "unknown method"),
    (["--suite", "smoke", "--earliness", "1.5"], "earliness"),
    (["--suite", "smoke", "--earliness", "0"], "earliness"),
    (["--suite", "smoke", "--seeds", "x"], "seed"),
    (["--suite", "smoke", "--executor", "spark"], "executor"),
    (["--suite", "smoke", "--dry-run", "--workers", "-1"], "--workers must be >= 0"),
    # the sweep sets these per job: a --set would change every run under the grid's labels
    (["--suite", "smoke", "--set", "data.name=GunPoint"], "--set data.name: the sweep sets it per job"),
    (["--suite", "smoke", "--set", "train.seed=7"], "--set train.seed"),
    (["--suite", "smoke", "--set", "method.options.weight=5"], "--set method.options.weight"),
    (["--suite", "smoke", "--set", "prefix.earliness=0.5"], "--set prefix.earliness"),
    (["--suite", "smoke", "--dry-run", "--set", "model.arch=fcnn"], "unknown architecture 'fcnn'"),
    (["--suite", "smoke", "--dry-run", "--set", "model.hidden=-3"], "model.hidden must be a positive integer"),
])
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, args, needle):
    code, _, err = run_cli(capsys, "bench", *args, "--out", tmp_path / "out")
    assert_clean_error(code, err, needle)
    assert not (tmp_path / "out" / "results.db").exists()


def test_a_suite_without_earliness_or_seeds_is_one_line(capsys, tmp_path):
    for key in ("earliness", "seeds"):
        suite = tmp_path / f"no-{key}.yaml"
        suite.write_text(f"datasets: [UnitTest]\nmethods: [base]\nearliness: [0.5]\nseeds: [0]\n{key}: null\n"
                         .replace(f"{key}: [0.5]\n" if key == "earliness" else f"{key}: [0]\n", ""))
        code, _, err = run_cli(capsys, "bench", "--suite", suite, "--dry-run")
        assert_clean_error(code, err, f"names no {key}")


def test_a_changed_data_file_makes_new_jobs(tmp_path):
    """The jobs of a user's files hash their content: results of the old data are not reused."""
    import numpy as np

    from earlykd.bench.suites import FileData
    rng = np.random.default_rng(0)
    train, test = tmp_path / "train.npz", tmp_path / "test.npz"
    for path in (train, test):
        np.savez(path, X=rng.normal(size=(12, 16)), y=np.array(["a", "b"] * 6))
    data = FileData.of({"name": train, "test_path": test}, "test")

    def hashes():
        return [j.job_hash for j in expand(get_suite("smoke"), [data], ["base"], [0.5], [0], sets=TINY)]
    before = hashes()
    assert hashes() == before
    np.savez(train, X=rng.normal(size=(12, 16)), y=np.array(["a", "b"] * 6))
    after = hashes()
    assert len(after) == len(before) and not set(after) & set(before)


def test_the_dry_run_says_what_a_real_run_would_train(tiny_sweep, tmp_path, capsys):
    root, _ = tiny_sweep
    sets = [a for s in TINY for a in ("--set", s)]
    code, out, _ = run_cli(capsys, "bench", "--suite", "smoke", "--datasets", "UnitTest", "--methods", "base", "kd",
                           "--earliness", "0.5", "--seeds", "0", *sets, "--out", root, "--dry-run")
    assert code == 0 and out.count("(stored)") == 3
    assert out.strip().endswith(f"3 stored, 0 finished in run directories; to train: 0 runs -> {root}")
    import shutil   # the same run directories without the database: read back, not trained
    shutil.copytree(Path(root) / "runs", tmp_path / "copy" / "runs", symlinks=True)
    code, out, _ = run_cli(capsys, "bench", "--suite", "smoke", "--datasets", "UnitTest", "--methods", "base", "kd",
                           "--earliness", "0.5", "--seeds", "0", *sets, "--out", tmp_path / "copy", "--dry-run")
    assert code == 0 and out.count("(finished in its run directory)") == 3
    assert "0 stored, 3 finished in run directories; to train: 0 runs" in out
    code, out, _ = run_cli(capsys, "bench", "--suite", "paper-cpu", "--datasets", "GunPoint", "--methods", "base",
                           "kd", "--earliness", "0.2", "--seeds", "0", "--out", tmp_path / "new", "--dry-run")
    assert code == 0 and "0 stored, 0 finished in run directories; to train: 5 runs" in out   # teacher, base, kd x 3
    for name, extra, needle in (("other", "options: {fitnets: {weight: 2}}", "'fitnets' is not one of the suite's"),
                                ("both", "options: {kd: {weight: 2}}\ngrids: {weight: [1, 2]}", "also a grid option"),
                                ("teacher", "teacher: {method: {name: kd}}", "a teacher is trained without")):
        (tmp_path / f"{name}.yaml").write_text(f"datasets: [UnitTest]\nmethods: [kd]\nearliness: [0.5]\nseeds: [0]\n{extra}\n")
        code, _, err = run_cli(capsys, "bench", "--suite", tmp_path / f"{name}.yaml", "--dry-run")
        assert_clean_error(code, err, needle)
    (tmp_path / "far.yaml").write_text("name: ../../elsewhere\ndatasets: [UnitTest]\nmethods: [kd]\n")
    code, _, err = run_cli(capsys, "bench", "--suite", tmp_path / "far.yaml", "--dry-run")
    assert_clean_error(code, err, "must be a plain name")
    (tmp_path / "all.yaml").write_text("datasets: [UnitTest]\nmethods: [all]\nearliness: [0.5]\nseeds: [0]\n")
    code, out, err = run_cli(capsys, "bench", "--suite", tmp_path / "all.yaml", "--dry-run")
    assert code == 0 and "dkd-UnitTest" in out and "dlf-UnitTest" in out, err   # 'all' in a suite as on the command line
    suite = tmp_path / "twice.yaml"
    suite.write_text("datasets: [UnitTest]\nmethods: [kd]\nearliness: [0.5]\nseeds: [0]\ngrids: {weight: [1, 1.0]}\n")
    code, _, err = run_cli(capsys, "bench", "--suite", suite, "--dry-run")
    assert_clean_error(code, err, "grid option 'weight' lists a value twice")


def test_unwritable_directory(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    code, _, err = run_cli(capsys, "bench", "--suite", "smoke", "--out", tmp_path / "file" / "sub")
    assert_clean_error(code, err, "not writable")


# -- store and skip-finished ----------------------------------------------------------------------

def test_store_rows_are_whole_and_unique(tiny_sweep, tmp_path):
    _, rows = tiny_sweep
    store = Store(tmp_path / "r.db")
    row = dict(rows[1])
    assert store.insert(row) and not store.insert(row)  # the unique key refuses a duplicate
    with pytest.raises(EarlykdError, match="incomplete"):
        store.insert({**row, "seed": 7, "auc_prc": None})
    with pytest.raises(sqlite3.Error):  # a failing statement leaves no partial row behind
        store.insert({**row, "seed": 8, "record": object()})
    assert len(store.rows()) == 1
    store.close()


def test_rerun_skips_stored_and_ingests_finished_run_dirs(tiny_sweep):
    root, rows = tiny_sweep
    jobs = tiny_jobs()
    assert len(rows) == len(jobs) == 3
    assert sweep(root, jobs, NoRun()) == rows  # everything stored: nothing trains
    with sqlite3.connect(root / "results.db") as conn:  # a crash after run.json, before the row
        conn.execute("DELETE FROM runs WHERE method = 'kd'")
    rows2 = sweep(root, jobs, NoRun())
    assert len(rows2) == 3
    kd = [r for r in rows2 if r["method"] == "kd"][0]
    assert kd["auc_prc"] == [r for r in rows if r["method"] == "kd"][0]["auc_prc"]


def test_a_stored_teacher_without_its_run_directory_is_trained_again_and_nothing_else(tiny_sweep, tmp_path, capsys):
    """A fresh clone holds a sweep's rows, not its runs: a later sweep that needs the teacher (its students, or the
    benchmarks built on its run directory) gets it trained again; stored students stay stored."""
    import shutil
    root, _ = tiny_sweep
    copy = tmp_path / "clone"
    copy.mkdir()
    shutil.copy(root / "results.db", copy / "results.db")
    # the rows as copied: an earlier test re-ingests the fixture's kd row, with a finished_at of its own second
    store = Store(copy / "results.db")
    rows = store.rows()
    store.close()
    sets = [a for s in TINY for a in ("--set", s)]
    args = ["bench", "--suite", "smoke", "--datasets", "UnitTest", "--methods", "base", "kd", "--earliness", "0.5",
            "--seeds", "0", *sets, "--out", copy, "--workers", "0", "--no-progress"]
    code, out, _ = run_cli(capsys, *args, "--dry-run")
    assert code == 0 and out.count("(stored)") == 2 and "to train: 1 runs" in out, out

    class Recording(InlineExecutor):
        trained = []

        def submit(self, fn, *args):
            self.trained.append(args[0].name)
            return super().submit(fn, *args)
    assert sweep(copy, tiny_jobs(), Recording(1)) == rows   # the teacher's row is kept
    assert Recording.trained == [j.name for j in tiny_jobs() if j.kind == "teacher"]
    assert (next(copy.glob("runs/teacher-*")) / "run.json").is_file()
    assert sweep(copy, tiny_jobs(), NoRun()) == rows   # and now it is stored in full


def test_option_grid_is_chosen_by_validation_loss(tmp_path):
    suite = Suite("t", "", ("UnitTest",), ("kd",), (0.5,), (0,), common=get_suite("smoke").common,
                  teacher={"train": {"epochs": 2}}, student={"train": {"epochs": 2}}, grids={"weight": [0.1, 10]})
    rows = sweep(tmp_path, expand(suite, sets=TINY))
    row = [r for r in rows if r["method"] == "kd"][0]
    grid = json.loads(row["record"])["grid"]
    assert len(grid) == 2 and json.loads(row["selected"])["weight"] in (0.1, 10)
    best = min(grid, key=lambda g: g["val_loss"])
    assert json.loads(row["selected"]) == {"weight": best["options"]["weight"]} and row["val_loss"] == best["val_loss"]
    assert row["run_dir"] == best["run_dir"]


# -- crash recovery -------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigkill_mid_sweep_then_rerun_completes_the_grid(tmp_path):
    out = tmp_path / "sweep"
    # one training run per job (teachers selected on validation, not by CV), so every run has 150 epochs
    sets = TINY[:-2] + ["train.epochs=150", "train.batch_size=8", "train.select=acc_loss"]
    args = [sys.executable, "-m", "earlykd.cli", "bench", "--suite", "smoke", "--datasets", "UnitTest",
            "--methods", "base", "kd", "--earliness", "0.5", "--seeds", "0", "1", "2", "--out", str(out),
            "--workers", "1", "--threads", "1", "--no-progress"] + [a for s in sets for a in ("--set", s)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db, deadline, before = out / "results.db", time.time() + 120, []
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            with sqlite3.connect(db) as conn:
                before = conn.execute("SELECT * FROM runs").fetchall() if conn.execute(
                    "SELECT name FROM sqlite_master WHERE name='runs'").fetchone() else []
            if len(before) >= 2 and list(out.glob("runs/*/last.safetensors")):  # a run is midway
                break
        time.sleep(0.05)
    interrupted = [p.parent for p in out.glob("runs/*/last.safetensors")]
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= len(before) < 7, "the sweep must be killed midway"
    for pid in workers:  # workers notice their sweep died and exit
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.05)
        assert not _alive(pid)
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM runs")]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [tuple(r) for r in conn.execute("SELECT * FROM runs")][:len(before)] == before  # nothing lost
    jobs = expand(get_suite("smoke"), ["UnitTest"], ["base", "kd"], [0.5], [0, 1, 2], sets=sets)
    keys = [(r["dataset"], r["method"], r["earliness"], r["prefix_mode"], r["seed"], r["job_hash"]) for r in rows]
    assert sorted(keys) == sorted(j.key for j in jobs)  # complete grid, no duplicates
    for r in rows:
        assert all(r[c] is not None for c in required(r)), r
        assert 0 <= r["auc_prc"] <= 1 and r["epochs"] == 150
        assert json.loads(r["record"])["status"] == "finished"
    assert interrupted and not list(out.glob("runs/*/last.safetensors"))  # interrupted runs were resumed
    assert all(len(json.loads((p / "run.json").read_text())["history"]) == 150 for p in interrupted)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_ctrl_c_stops_the_workers_before_the_sweep_lets_go(tmp_path):
    """Ctrl-C: the running job is killed and queued ones dropped (no run finishes after it), the sweep exits 130
    with one line, and the same command then finishes the grid."""
    out = tmp_path / "sweep"
    sets = TINY[:-2] + ["train.epochs=400", "train.batch_size=8", "train.select=acc_loss"]
    args = [sys.executable, "-m", "earlykd.cli", "bench", "--suite", "smoke", "--datasets", "UnitTest",
            "--methods", "base", "--earliness", "0.5", "--seeds", "0", "1", "--out", str(out),
            "--workers", "1", "--threads", "1", "--no-progress"] + [a for s in sets for a in ("--set", s)]
    # SIGINT as a terminal's Ctrl-C delivers it: a shell's background job (`make test &`) starts with it ignored,
    # and a child keeps that
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("runs/base-*/last.safetensors")):
        time.sleep(0.05)
    workers = _children(proc.pid)
    finished = sorted(out.glob("runs/*/run.json"))
    assert proc.poll() is None, f"the sweep ended (exit {proc.returncode}) before a run's state file was seen"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == \
        "earlykd: interrupted; re-run the same command to continue the sweep", err
    time.sleep(2)   # (multiprocessing's resource tracker, also a child, ends once the sweep has)
    assert workers and not any(_alive(pid) for pid in workers)   # gone at once, not after their jobs
    assert sorted(out.glob("runs/*/run.json")) == finished
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(list(out.glob("runs/base-*/run.json"))) == 2


# -- executors ------------------------------------------------------------------------------------

def test_a_database_shared_by_two_sweep_directories_takes_one_sweep_at_a_time(tmp_path, capsys):
    import fcntl
    shared = tmp_path / "shared"
    shared.mkdir()
    with open(shared / ".sweep.lock", "w") as held:   # another sweep writing to this database
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        sets = [a for s in TINY for a in ("--set", s)]
        code, _, err = run_cli(capsys, "bench", "--suite", "smoke", "--datasets", "UnitTest", "--methods", "base",
                               "--earliness", "0.5", "--seeds", "0", *sets, "--out", tmp_path / "mine",
                               "--db", shared / "results.db", "--workers", "0")
    assert_clean_error(code, err, f"another sweep is running in {shared}")


def test_local_and_ray_executors_give_the_same_rows(tmp_path):
    ray = pytest.importorskip("ray")
    from earlykd.bench.executors import RayExecutor
    jobs = tiny_jobs(methods=("base", "kd"))
    local = sweep(tmp_path / "local", jobs, LocalExecutor(workers=1, threads=1))
    remote = sweep(tmp_path / "ray", tiny_jobs(methods=("base", "kd")), RayExecutor(workers=1, threads=1))
    assert not ray.is_initialized()
    def pick(rows):
        return sorted((r["method"], r["job_hash"], *[r[m] for m in METRICS], r["epochs"], r["best_epoch"])
                      for r in rows)
    assert pick(local) == pick(remote) and len(local) == 3


# -- reports --------------------------------------------------------------------------------------

def synthetic_db(path: Path, datasets: int = 5, methods=("base", "fitnets", "kd")) -> Path:
    """Rows where kd beats fitnets beats base on every dataset."""
    store = Store(path)
    offsets = {m: v for m, v in {"base": 0.0, "fitnets": 0.02, "kd": 0.05}.items() if m in methods}
    for d in range(datasets):
        name = f"D{d}"
        rows = [dict(method="teacher", earliness=1.0, seed=0, auc=0.95)]
        rows += [dict(method=m, earliness=e, seed=s, auc=0.5 + 0.05 * d + e / 4 + off + 0.01 * s)
                 for m, off in offsets.items() for e in (0.4, 0.8) for s in (0, 1)]
        for r in rows:
            row = {c: None for c in COLUMNS}
            row.update(dataset=name, method=r["method"], earliness=r["earliness"], prefix_mode="truncate",
                       seed=r["seed"], teacher_arch="lstm", student_arch="lstm", auc_prc=r["auc"],
                       average_precision=r["auc"], accuracy=0.8, roc_auc=0.9, nll=0.4, ece=0.05, epochs=10,
                       train_seconds=5.0, seconds_per_epoch=0.5 if r["method"] == "teacher" else 0.2,
                       peak_memory_mb=500.0, config_hash="c" * 12, version="0.1.0", options={},
                       job_hash=f"h{d}{r['method']}{r['earliness']}{r['seed']}", run_dir="runs/x",
                       finished_at="2026-01-01T00:00:00", record={"status": "finished"}, suite="synthetic")
            if r["method"] != "teacher":
                row.update(fidelity_top1=0.9, fidelity_kl=0.1)
            assert store.insert(row)
    store.close()
    return path


def test_report_writes_tables_plots_and_html(tmp_path):
    from earlykd.report.html import write_report
    db = synthetic_db(tmp_path / "results.db")
    written = write_report(db, tmp_path)
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    for table in ("summary", "per_dataset_auc_prc", "fidelity", "teacher", "timing"):
        assert {f"tables/{table}.{ext}" for ext in ("md", "csv", "tex")} <= names
    assert {"plots/auc_prc_vs_earliness.png", "plots/seconds_per_epoch.png", "plots/critical_difference_e0.4.png",
            "plots/critical_difference_e0.8.png", "runs.csv", "report.html", "report.md"} <= names
    summary = list(csv.reader(open(tmp_path / "tables" / "summary.csv")))
    assert summary[0][:4] == ["method", "AUC-PRC e=0.4", "rank e=0.4", "wins e=0.4"]
    by_method = {r[0]: r for r in summary[1:]}
    assert float(by_method["kd"][2]) == 1.0 and by_method["kd"][3] == "5"
    assert float(by_method["base"][2]) == 3.0 and by_method["base"][3] == "0"
    assert float(by_method["teacher (full series)"][1]) == pytest.approx(0.95)
    assert "\\begin{tabular}" in (tmp_path / "tables" / "summary.tex").read_text()
    assert "**" in (tmp_path / "tables" / "summary.md").read_text()
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "src='http" not in page and "teacher (full series)" in page


def test_a_report_of_two_methods_has_no_critical_difference_diagram(tmp_path):
    """Friedman's test needs three methods: with two, the report is written without the diagram (it raised
    inside aeon before)."""
    from earlykd.report.html import write_report
    written = write_report(synthetic_db(tmp_path / "results.db", methods=("base", "kd")), tmp_path)
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    assert {"plots/auc_prc_vs_earliness.png", "report.html", "tables/summary.md"} <= names
    assert not any("critical_difference" in n for n in names)


def test_the_report_warns_when_students_of_one_dataset_had_different_teachers(tmp_path):
    import pandas as pd

    from earlykd.report.html import describe
    from earlykd.report.tables import load_runs
    df, superseded = load_runs(synthetic_db(tmp_path / "results.db"))
    assert not any(line.startswith("warning:") for line in describe(df, superseded, tmp_path))
    mixed = df.assign(teacher_id=["t-old" if (m == "kd" and d == "D0") else "t-new"
                                  for m, d in zip(df.method, df.dataset)])
    lines = describe(pd.DataFrame(mixed), superseded, tmp_path)
    assert any(line.startswith("warning:") and "more than one teacher on D0 (2)" in line for line in lines)


def test_the_report_warns_when_cells_have_fewer_seeds_than_the_rest(tmp_path):
    from earlykd.report.html import describe
    from earlykd.report.tables import load_runs
    df, superseded = load_runs(synthetic_db(tmp_path / "results.db"))
    students = df[df.method != "teacher"]
    assert students.groupby(["dataset", "earliness", "method"]).seed.nunique().min() > 1
    assert not any(line.startswith("warning:") for line in describe(df, superseded, tmp_path))
    first = students.iloc[0]
    cut = df.drop(students[(students.dataset == first.dataset) & (students.earliness == first.earliness)
                           & (students.method == first.method) & (students.seed != first.seed)].index)
    lines = [line for line in describe(cut, superseded, tmp_path) if line.startswith("warning:")]
    assert len(lines) == 1 and "1 (dataset, earliness, method) cell(s)" in lines[0]
    assert f"{first.dataset} e={first.earliness:g}" in lines[0]


def test_a_new_report_leaves_no_table_of_an_earlier_one(tmp_path, capsys):
    db = synthetic_db(tmp_path / "results.db")
    assert run_cli(capsys, "report", tmp_path)[0] == 0 and (tmp_path / "tables" / "summary.md").is_file()
    (tmp_path / "tables" / "mine.md").write_text("a file of the user's")
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM runs WHERE method != 'teacher'")
    assert run_cli(capsys, "report", tmp_path)[0] == 0
    tables = sorted(p.name for p in (tmp_path / "tables").iterdir())
    assert tables == ["mine.md"] + [f"{t}.{e}" for t in ("teacher", "timing") for e in ("csv", "md", "tex")]
    assert not (tmp_path / "plots" / "auc_prc_vs_earliness.png").exists()


def test_report_reads_the_database_without_writing_and_names_a_foreign_one(tmp_path, capsys):
    import hashlib
    db = synthetic_db(tmp_path / "results.db")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    code, _, err = run_cli(capsys, "report", tmp_path)
    assert code == 0, err
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    for name, sql, needle in (("other", "CREATE TABLE rows (id INTEGER)", "no runs table"),
                              ("old", "CREATE TABLE runs (id INTEGER, dataset TEXT)", "its runs table lacks method")):
        (tmp_path / name).mkdir()
        with sqlite3.connect(tmp_path / name / "results.db") as conn:
            conn.execute(sql)
        code, _, err = run_cli(capsys, "report", tmp_path / name)
        assert_clean_error(code, err, "not an earlykd results database", needle)


def test_the_fidelity_average_is_over_datasets_not_runs():
    """Per earliness the average row is the mean of per-dataset means, over datasets where every method has a
    result: a dataset with more seeds weighs no more, one that a method lacks is left out."""
    import pandas as pd

    from earlykd.report.tables import fidelity_table
    rows = [("A", "kd", s, 1.0) for s in (0, 1, 2)] + [("B", "kd", 0, 0.0), ("A", "base", 0, 0.5),
                                                        ("B", "base", 0, 0.5), ("C", "kd", 0, 0.3)]
    df = pd.DataFrame([dict(dataset=d, method=m, seed=s, earliness=0.4, fidelity_top1=v, fidelity_kl=v,
                            auc_prc=0.5) for d, m, s, v in rows])
    average = next(r for r in fidelity_table(df).rows if r[0] == "average")
    assert average[3] == pytest.approx(0.5) and average[5] == pytest.approx(0.5)   # kd top-1, base top-1


def test_bench_and_report_end_to_end(capsys, tmp_path):
    out = tmp_path / "sweep"
    sets = [a for s in TINY for a in ("--set", s)]
    args = ["bench", "--suite", "smoke", "--datasets", "UnitTest", "--methods", "base,kd", "--earliness", "0.5",
            "--seeds", "0", "--workers", "0", "--no-progress", "--out", out, *sets]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "3 trained" in stdout
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0 and "3 already stored" in stdout, err
    code, stdout, err = run_cli(capsys, "report", out)
    assert code == 0, err
    with open(out / "runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:len(PROTOCOL)] == PROTOCOL
    teacher = [r for r in rows if r["method"] == "teacher"]
    assert len(rows) == 3 and len(teacher) == 1 and float(teacher[0]["earliness"]) == 1.0
    assert all(r["fidelity_top1"] for r in rows if r["method"] != "teacher")
    assert (out / "report.html").stat().st_size > 10_000
    assert "teacher" in (out / "tables" / "summary.md").read_text()


def test_sweep_with_an_ensemble_teacher(tmp_path):
    """A suite whose teacher is an ensemble (two architectures, the best kept, as paper-cpu) stores a
    complete teacher row and its students distil from it."""
    suite = Suite("ens", "ensemble teacher", ("UnitTest",), ("kd",), (0.5,), (0,),
                  common={"model": {"layers": 1, "hidden": 8}, "data": {"length": 32},
                          "train": {"epochs": 2, "batch_size": 8}},
                  teacher={"model": {"arch": "fcn,lstm"}, "ensemble": {"combine": "best"}},
                  student={"model": {"arch": "fcn"}})
    rows = sweep(tmp_path / "s", expand(suite, None, None, None, None))
    teacher = next(r for r in rows if r["method"] == "teacher")
    student = next(r for r in rows if r["method"] == "kd")
    assert teacher["teacher_arch"] == teacher["student_arch"] in ("fcn", "lstm")
    assert student["teacher_id"] == teacher["teacher_id"] and student["teacher_arch"] == teacher["student_arch"]


def test_a_database_that_cannot_be_opened_leaves_no_out_folder(tmp_path, capsys):
    (tmp_path / "db").mkdir()   # a folder where the database file should be
    code, _, err = run_cli(capsys, "bench", "--suite", "smoke", "--datasets", "UnitTest", "--methods", "base",
                           "--earliness", "0.5", "--seeds", "0", "--workers", "0", "--db", tmp_path / "db",
                           "--out", tmp_path / "out")
    assert_clean_error(code, err, "cannot open results database")
    assert not (tmp_path / "out").exists()
