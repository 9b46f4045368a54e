"""The `early` benchmark: earlykd's anytime students and stopping policies against aeon's TEASER and
ProbabilityThresholdEarlyClassifier and tslearn's NonMyopicEarlyClassifier (issue 10, section 5).

Every contender gets the same UCR train/test split of each dataset. earlykd carves its validation split
(20 %, stratified, split seed 0) from the training split and chooses everything on it; the peers fit on
the whole training split with their documented defaults. Each job runs in its own process (1 thread, a
wall-clock limit); its rows land in a SQLite database the moment it ends, and a re-run skips stored rows.

    python benchmarks/early_vs_peers.py                      # the full suite into benchmarks/results/early
    python benchmarks/early_vs_peers.py --datasets GunPoint --seeds 0 --epochs 20 --out DIR
    python benchmarks/early_vs_peers_report.py [DIR]            # summary.md, hm_cd.png, curves.png
"""
from __future__ import annotations

import argparse
import fcntl
import functools
import json
import multiprocessing
import os
import sqlite3
import sys
import time
import traceback
from pathlib import Path

import numpy as np

DATASETS = ("GunPoint", "ArrowHead", "ItalyPowerDemand", "OSULeaf", "JapaneseVowels", "ACSF1")
SEEDS = (0, 1, 2)
PEERS = ("teaser", "probability_threshold", "nonmyopic")
METHODS = ("base", "kd", "dlf")
# `earlykd:<method>[/native]/cf`: the student trained on train + val, its policies calibrated on 5-fold out-of-fold
# predictions (early.crossfit, docs/early.md). Run on request only (--contenders): measured, it did not pay
# (notes.md, 2026-11-28). Its methods were Base and DLF, the distillation method of highest mean validation HM.
CROSSFIT, CROSSFIT_METHODS = 5, ("base", "dlf")
# Peers whose defaults do not fit 2 cores on a dataset run fewer seeds there: {(peer, dataset): seeds}. OSULeaf and
# ACSF1 were cut to seed 0 until their seed-0 jobs measured 8-27 min each (2026-11-27): they fit, so none is cut.
CUTS: dict[tuple[str, str], tuple[int, ...]] = {}
# earlykd's teacher is the quick suite's: per dataset the mean of 5 FCN-128 (3 layers), each with its epochs chosen by
# 5-fold CV within 150 and refit, one teacher for every seed (benchmarks/results/quick/teachers.md).
TEACHER = {"quick_suite_ensemble": {"arch": "fcn", "layers": 3, "hidden": 128, "members": 5, "select": "cv",
                                    "budget": 150}}
STUDENT = {"arch": "fcn", "layers": 3, "hidden": 64, "mode": "truncate", "level_norm": True}   # norms per checkpoint
TEACHER_GRID = 100                  # the quick teachers' data.length; `earlykd:<method>/native` students use T steps
EPOCHS = 300                        # the anytime student's
NONMYOPIC = {"n_clusters": 2, "base_classifier": None, "min_t": 1, "lamb": 1.0, "cost_time_parameter": 1.0}
LATENCY_SERIES = 10
TIMEOUT = 4 * 3600
COLUMNS = ("dataset", "contender", "seed", "accuracy", "earliness", "hm", "fit_seconds", "decision_ms",
           "status", "error", "decision_ms_max", "val_hm", "val_accuracy", "val_earliness", "teacher_seconds",
           "settings", "curve", "finished_at", "val_hm_cv", "val_accuracy_cv", "val_earliness_cv")
# The protocol's run columns (docs/protocol.md) of an earlykd row's anytime student, from its run.json: test metrics
# as means over the checkpoints, and the run's own facts. Peers have no student run: empty. (`accuracy` stays the
# decision's, the column.)
TEST_METRICS = ("auc_prc", "average_precision", "roc_auc", "nll", "ece", "fidelity_top1", "fidelity_kl")
RUN_FACTS = ("teacher_arch", "student_arch", "epochs", "train_seconds", "seconds_per_epoch", "peak_memory_mb",
             "config_hash", "version")
RUN_COLUMNS = RUN_FACTS[:2] + TEST_METRICS + RUN_FACTS[2:]
STORED = COLUMNS + RUN_COLUMNS   # the database's columns


# -- data: the same equal-length arrays for everyone ---------------------------------------------
def arrays(name: str):
    """(X, y, X_test, y_test) as float (cases, channels, T) arrays, T the protocol's (and earlykd's) reference
    length: the longest training series. Unequal-length data (JapaneseVowels) are brought to T as earlykd's prefix
    contract does: a shorter series is held at its last value, a longer test series is seen up to T samples. So
    every contender reads the same samples, and earliness has one scale."""
    from earlykd.data import load_raw
    from earlykd.early.assess import ended
    raw = load_raw({"name": name})
    T = max(x.shape[-1] for x in raw.X_train)

    def pad(xs):
        return np.stack([ended(x[:, :T], T) for x in xs]).astype(float)
    return pad(raw.X_train), np.asarray(raw.y_train), pad(raw.X_test), np.asarray(raw.y_test)


def harmonic_mean(accuracy: float, earliness: float) -> float:
    from earlykd.decide import harmonic_mean as hm
    return hm(accuracy, earliness)


# -- peers ---------------------------------------------------------------------------------------
def _aeon_latency(model, X) -> tuple[float, float]:
    """(ms per new time step, worst step in ms): one series at a time, update_predict at each of the model's
    classification points (aeon accepts nothing else: a stream calls it when the next point is reached;
    the steps in between cost nothing), until decided; the total over the steps the stream took."""
    total, steps, worst = 0.0, 0, 0.0
    for x in X:
        model.reset_state_info()
        for n in [int(p) for p in model._classification_points if p <= x.shape[-1]]:
            start = time.perf_counter()
            _, decided = model.update_predict(x[None, :, :n])
            ms = (time.perf_counter() - start) * 1000
            total, worst = total + ms, max(worst, ms)
            if decided.all():
                break
        steps += n
    model.reset_state_info()
    return total / steps, worst


def _nonmyopic_latency(model, X) -> tuple[float, float]:
    """(ms per new time step, worst step in ms) of NonMyopic's own decision step (expected future costs of the prefix; stop when
    waiting costs more, then classify), one series at a time until it decides."""
    times = []
    for x in X:
        for t in range(model.min_t, x.shape[0] + 1):
            start = time.perf_counter()
            stop = t == x.shape[0] or int(np.argmin(model._expected_costs(x[:t]))) == 0
            if stop:
                model.classifiers_[t].predict(x[None, :t])
            times.append((time.perf_counter() - start) * 1000)
            if stop:
                break
    return float(np.mean(times)), float(np.max(times))


def run_peer(name: str, dataset: str, seed: int, latency_series: int) -> list[dict]:
    X, y, Xt, yt = arrays(dataset)
    started = time.perf_counter()
    if name == "nonmyopic":
        from tslearn.early_classification import NonMyopicEarlyClassifier
        model = NonMyopicEarlyClassifier(**NONMYOPIC, random_state=seed)
        Xn, Xtn = X.transpose(0, 2, 1), Xt.transpose(0, 2, 1)   # tslearn: (cases, time, channels)
        model.fit(Xn, y)
        fit = time.perf_counter() - started
        labels, stops = model.predict_class_and_earliness(Xtn)
        acc, earl = float(np.mean(labels == yt)), float(np.mean(stops / Xt.shape[-1]))
        hm = harmonic_mean(acc, earl)
        ms = _latency(_nonmyopic_latency, model, Xtn[:latency_series])
        settings = {k: v for k, v in NONMYOPIC.items()} | {"random_state": seed}
    else:
        from aeon.classification.early_classification import TEASER, ProbabilityThresholdEarlyClassifier
        cls = TEASER if name == "teaser" else ProbabilityThresholdEarlyClassifier
        model = cls(random_state=seed).fit(X, y)
        fit = time.perf_counter() - started
        hm, acc, earl = (float(v) for v in model.score(Xt, yt))
        ms = _latency(_aeon_latency, model, Xt[:latency_series])
        settings = {"defaults": True, "random_state": seed,
                    "classification_points": [int(p) for p in model._classification_points]}
    return [{"contender": name, "accuracy": acc, "earliness": earl, "hm": hm, "fit_seconds": fit,
             "decision_ms": ms[0], "decision_ms_max": ms[1], "error": ms[2], "settings": settings}]


def _latency(measure, model, X) -> tuple:
    """A failed latency measurement leaves the scores standing: no decision_ms, the error noted."""
    try:
        return (*measure(model, X), None)
    except Exception as exc:  # noqa: BLE001 (reported in the row)
        return None, None, f"latency not measured: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


# -- earlykd ---------------------------------------------------------------------------------------
def _teacher(dataset: str, root: Path):
    """(the quick suite's ensemble teacher of `dataset`, its recorded wall seconds); the same for every seed. Its
    files are linked into root/runs so its output caches are written here, not into the quick sweep."""
    from earlykd import runs
    from uncertainty import QUICK_TEACHERS, link_teachers
    found = sorted(p.name for p in QUICK_TEACHERS.glob(f"teacher-{dataset}-*"))
    if not found:
        raise RuntimeError(f"no quick-suite teacher for {dataset} in {QUICK_TEACHERS} (run `earlykd bench --suite quick`)")
    (root / "runs").mkdir(parents=True, exist_ok=True)
    with open(root / "runs" / ".teacher.lock", "w") as lock:  # jobs in parallel link one teacher
        fcntl.flock(lock, fcntl.LOCK_EX)
        link_teachers(root, found[:1])
    run = runs.Run(root / "runs" / found[0], runs.read_run(root / "runs" / found[0])[1])
    return run, float(run.record["wall_seconds"])


def _student_latency(run_dir: Path, policy: str, X) -> tuple[float, float]:
    """(ms per new time step, worst step in ms): EarlyClassifier.update_predict, one series at a time, a call
    per new sample, until decided."""
    from earlykd import EarlyClassifier
    est = EarlyClassifier.from_run(run_dir, policy=policy)
    times = []
    for x in X:
        est.reset_state_info()
        for n in range(1, x.shape[-1] + 1):
            start = time.perf_counter()
            _, decided = est.update_predict(x[None, :, :n])
            times.append((time.perf_counter() - start) * 1000)
            if decided.all():
                break
    return float(np.mean(times)), float(np.max(times))


@functools.lru_cache(maxsize=None)
def native_length(dataset: str) -> int | None:
    """The series length T when it exceeds the teacher's grid (the `/native` variant's grid), else None (loaded
    once per dataset: `jobs` asks for every /native group)."""
    T = arrays(dataset)[0].shape[-1]
    return T if T > TEACHER_GRID else None


def run_earlykd(group: str, dataset: str, seed: int, root: Path, epochs: int,
                latency_series: int) -> list[dict]:
    """An `earlykd:<method>[/native][/cf]` job: one anytime student, every policy. `/native`: the student's grid is
    the series' own T samples (early.length = T) instead of the teacher's 100 steps; `/cf`: trained on train + val,
    calibrated on out-of-fold predictions (early.crossfit = CROSSFIT)."""
    from earlykd import api, runs
    from earlykd.decide import POLICIES
    from earlykd.early.run import train_early
    variant = group.split(":")[1]
    method, native, folds = variant.split("/")[0], "/native" in variant, CROSSFIT if variant.endswith("/cf") else 0
    length = native_length(dataset) if native else None
    teacher, teacher_s = _teacher(dataset, root)
    out = root / "runs" / dataset / f"s{seed}" / f"anytime-{variant.replace('/', '-')}"
    policies = list(POLICIES)
    if not (out / runs.RUN_FILE).is_file():
        cfg = api.make_config(teacher=str(teacher.path), method=method, out=str(out), epochs=epochs, seed=seed,
                              threads=1, progress=False, batch_size=16, device="cpu", arch=STUDENT["arch"],
                              layers=STUDENT["layers"], hidden=STUDENT["hidden"], mode=STUDENT["mode"])
        cfg["early"] = {**cfg["early"], "level_norm": STUDENT["level_norm"], "length": length, "crossfit": folds}
        train_early(cfg, None, policies, resume=runs.unfinished(out))
    record = runs.read_run(out)[1]
    Xt = arrays(dataset)[2][:latency_series]
    fit = float(record["wall_seconds"]) + (teacher_s if method != "base" else 0.0)
    T = record["data"]["reference_length"]
    curve = _curve(record, out)
    rows = []
    for policy in policies:
        test, val = record["test_policies"][policy], record["policies_val"][policy]
        ms = _student_latency(out, policy, Xt)
        rows.append({"contender": f"earlykd:{variant}:{policy}", "accuracy": test["accuracy"], **run_columns(record),
                     "earliness": test["earliness"], "hm": test["hm"], "fit_seconds": fit, "decision_ms": ms[0],
                     "decision_ms_max": ms[1], "val_hm": val["hm"], "val_accuracy": val["accuracy"],
                     "val_earliness": val["earliness"], "val_hm_cv": val.get("cv_hm"),
                     "val_accuracy_cv": val.get("cv_accuracy"), "val_earliness_cv": val.get("cv_earliness"),
                     "teacher_seconds": teacher_s, "curve": curve,
                     "settings": {"teacher": TEACHER, "student": STUDENT, "epochs": epochs, "levels": "0.05..1.0",
                                  "run_dir": str(out.relative_to(root)), "T": T, "grid": record["data"]["length"],
                                  "calibration": record["calibration"],
                                  "policy": json.loads((out / "decide.json").read_text())["policies"][policy]}})
    return rows


def _curve(record: dict, out: Path) -> list:
    """Test accuracy of the anytime student at each checkpoint: [(earliness seen, accuracy), ...]."""
    from earlykd import EarlyClassifier
    earliness = EarlyClassifier.from_run(out).decider_.earliness
    levels = record["test_levels"]
    return [[float(e), float(levels[k]["accuracy"])] for e, k in zip(earliness, levels)]


# -- jobs, processes, the store ---------------------------------------------------------------------
def jobs(datasets, seeds, contenders) -> list[tuple[str, str, int]]:
    """(dataset, group, seed): a group is a peer or 'earlykd:<method>[/native]' (one row per policy); a
    `/native` group runs only where T exceeds the teacher's grid (elsewhere it would repeat the default)."""
    out = []
    for d in datasets:
        for group in contenders:
            if "/native" in group and native_length(d) is None:
                continue
            for s in seeds:
                if s in CUTS.get((group, d), seeds):
                    out.append((d, group, s))
    return out


def run_job(job, root: str, epochs, latency_series: int) -> list[dict]:
    dataset, group, seed = job
    if group.startswith("earlykd:"):
        return run_earlykd(group, dataset, seed, Path(root), epochs, latency_series)
    return run_peer(group, dataset, seed, latency_series)


def _capture(fn, args) -> tuple:
    """('ok', rows) or ('failed', one-line error, trace): a contender that raises is a failure, nothing more."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 (reported as the job's failure rows)
        text = str(exc).strip().splitlines()
        return ("failed", f"{type(exc).__name__}: {text[-1] if text else ''}"[:300], traceback.format_exc(limit=-3))


def _child(conn, fn, args):
    import warnings
    warnings.filterwarnings("ignore")
    import torch
    torch.set_num_threads(1)
    conn.send(_capture(fn, args))


def run_isolated(fn, args, timeout: float) -> tuple:
    """fn(*args) in a spawned process with 1 thread; ('timeout', error, '') past `timeout` seconds."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args), daemon=True)
    started = time.perf_counter()
    proc.start()
    child.close()
    result = None
    if parent.poll(timeout):
        try:
            result = parent.recv()
        except EOFError:
            pass
    proc.join(5 if result is not None else 0)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if result is not None:
        return result
    if time.perf_counter() - started >= timeout:
        return ("timeout", f"timeout: no result within {timeout:.0f} s", "")
    return ("failed", f"the job's process died (exit code {proc.exitcode})", "")


def settings_parts(settings: dict) -> dict:
    """Settings as {"peers": ..., "earlykd": ...}: what each kind of row depends on (a flat dict from before the
    split is read as both parts)."""
    if set(settings) == {"peers", "earlykd"}:
        return settings
    shared = {k: v for k, v in settings.items() if k == "latency_series"}
    return {"peers": {**shared, **{k: v for k, v in settings.items() if k == "nonmyopic"}},
            "earlykd": {**shared, **{k: v for k, v in settings.items() if k not in ("nonmyopic", "latency_series")}}}


class Store:
    def __init__(self, path: Path, settings: dict, replace_earlykd: bool = False):
        """Rows and the settings they were made with. Other settings are refused, except that with
        `replace_earlykd` new earlykd settings replace the old and delete the earlykd rows (peers' rows stay)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, timeout=60)
        settings = settings_parts(settings)
        with self.conn:
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, job TEXT, "
                              f"{', '.join(STORED)}, UNIQUE (dataset, contender, seed))")
            have = {r[1] for r in self.conn.execute("PRAGMA table_info(rows)")}
            for column in (c for c in STORED if c not in have):   # a database from before the column
                self.conn.execute(f"ALTER TABLE rows ADD COLUMN {column}")
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            stored = self.conn.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
            old = None if stored is None else settings_parts(json.loads(stored[0]))
            changed = [] if old is None else [k for k in settings if old[k] != settings[k]]
            if changed == ["earlykd"] and replace_earlykd:
                self.conn.execute("DELETE FROM rows WHERE contender LIKE 'earlykd:%'")
            elif changed:
                hint = " (--replace-earlykd drops its earlykd rows and keeps the peers')" if changed == ["earlykd"] else ""
                sys.exit(f"error: {path} holds {' and '.join(changed)} results made with other settings "
                         f"({json.dumps({k: old[k] for k in changed}, sort_keys=True)}); use another --out or the "
                         f"same settings{hint}")
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('settings', ?)", (json.dumps(settings, sort_keys=True),))

    def done(self, retry_failed: bool) -> set[str]:
        query = "SELECT job FROM rows" + (" WHERE status = 'ok'" if retry_failed else "")
        return {r[0] for r in self.conn.execute(query)}

    def put(self, job_id: str, rows: list[dict]) -> None:
        """All rows of a job in one transaction (a failure row replaces nothing but its own job's rows)."""
        with self.conn:
            self.conn.execute("DELETE FROM rows WHERE job = ?", (job_id,))
            for row in rows:
                values = [json.dumps(row.get(c)) if isinstance(row.get(c), (dict, list)) else row.get(c) for c in STORED]
                self.conn.execute(f"INSERT OR REPLACE INTO rows (job, {', '.join(STORED)}) VALUES "
                                  f"({', '.join('?' * (len(STORED) + 1))})", [job_id, *values])

    def rows(self) -> list[dict]:
        cur = self.conn.execute(f"SELECT {', '.join(STORED)} FROM rows ORDER BY dataset, contender, seed")
        return [dict(zip(STORED, r)) for r in cur]

    def fill_run_columns(self, root: Path) -> int:
        """Store the RUN_COLUMNS of earlykd rows made before those columns existed, from their run directories while
        those are at hand (they are not committed); -> rows filled."""
        filled = 0
        with self.conn:
            for r in self.rows():
                if any(r[c] is None for c in RUN_COLUMNS) and (values := run_columns_of(r, root)):
                    self.conn.execute(f"UPDATE rows SET {', '.join(f'{c} = ?' for c in values)} WHERE dataset = ? "
                                      "AND contender = ? AND seed = ?",
                                      [*values.values(), r["dataset"], r["contender"], r["seed"]])
                    filled += 1
        return filled


def job_id(job) -> str:
    return f"{job[0]}|{job[1]}|{job[2]}"


def failure_rows(job, status: str, error: str) -> list[dict]:
    """One row per contender the job would have given, each marked failed (never a score)."""
    dataset, group, seed = job
    if group.startswith("earlykd:"):
        from earlykd.decide import POLICIES
        names = [f"{group}:{p}" for p in POLICIES]
    else:
        names = [group]
    return [{"contender": n, "status": status, "error": error} for n in names]


def sweep(todo, store: Store, root: Path, epochs, latency_series: int, timeout: float, retry_failed=False,
          job_fn=run_job, isolate: bool = True, workers: int = 1, log=print) -> dict:
    """Run the jobs not yet stored, each in its own process, `workers` at a time (isolate=False: in this
    process, one at a time, no time limit). Rows are stored by this thread as each job ends."""
    from concurrent.futures import ThreadPoolExecutor, as_completed
    done = store.done(retry_failed)
    counts = {"stored": 0, "ok": 0, "failed": 0}
    pending = [job for job in todo if job_id(job) not in done]
    counts["stored"] = len(todo) - len(pending)

    def one(job):
        started = time.perf_counter()
        args = (job, str(root), epochs, latency_series)
        result = run_isolated(job_fn, args, timeout) if isolate else _capture(job_fn, args)
        return result, time.perf_counter() - started

    with ThreadPoolExecutor(max(1, workers) if isolate else 1) as pool:
        futures = {pool.submit(one, job): job for job in pending}
        for future in as_completed(futures):
            job = futures[future]
            (status, *rest), seconds = future.result()
            rows = [{**r, "status": "ok"} for r in rest[0]] if status == "ok" else failure_rows(job, status, rest[0])
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            store.put(job_id(job), [{**r, "dataset": job[0], "seed": job[2], "finished_at": stamp} for r in rows])
            counts["ok" if status == "ok" else "failed"] += 1
            log(f"{job_id(job)}: {status} in {seconds:.0f} s" + (f" ({rest[0]})" if status != "ok" else ""))
    return counts


# -- export ----------------------------------------------------------------------------------------
def family_of(variant: str) -> str:
    """'cf' for students calibrated on out-of-fold predictions (`/cf`), '' for those calibrated on validation: each
    family makes its own choice."""
    return "cf" if variant.endswith("cf") else ""


def incomplete_variants(rows: list[dict]) -> set[tuple[str, str]]:
    """(dataset, grid variant) pairs that lack a (seed, method) job some student of the same family has on that
    dataset: such a variant joins no choice there until its sweep is finished (a partial candidate set would differ
    between seeds). A family's variant on the teacher's grid is its reference and never left out."""
    jobs_of: dict[tuple[str, str], set] = {}
    for r in rows:
        if r["contender"].startswith("earlykd:") and not r["contender"].endswith("chosen"):   # a student's row
            variant = r["contender"].split(":")[1]
            jobs_of.setdefault((r["dataset"], variant.partition("/")[2]), set()).add(
                (r["seed"], variant.split("/")[0]))
    need: dict[tuple[str, str], set] = {}
    for (d, v), have in jobs_of.items():
        need.setdefault((d, family_of(v)), set()).update(have)
    return {(d, v) for (d, v), have in jobs_of.items() if v not in ("", "cf") and not have >= need[d, family_of(v)]}


def selection_figures(row: dict, crossed: bool = True) -> tuple[float, float]:
    """(HM, accuracy) a choice among candidates ranks by: the cross-validated calibration figures (each validation
    fold decided by the policy calibrated on the others) when `crossed` and stored, else the calibration's own
    (rows from before 2026-11-28's cross-validated figures)."""
    from earlykd.decide.base import selection_key
    return selection_key({"hm": float(row["val_hm"]), "accuracy": float(row["val_accuracy"]),
                          "cv_hm": row.get("val_hm_cv") if crossed else None, "cv_accuracy": row.get("val_accuracy_cv")})


def chosen_rows(rows: list[dict], crossed: bool = True) -> list[dict]:
    """Per family (calibrated on validation, or `/cf` on out-of-fold predictions): earlykd:<method>[/cf]:chosen, per
    dataset, seed and method the grid (the teacher's or `/native`) and policy of highest calibration HM; and
    earlykd:chosen[/cf], per dataset and seed the method, grid and policy of highest calibration HM (ties: its
    accuracy, then the order of METHODS, the teacher's grid before the native one, then the policy registry's
    order). The calibration HM is the cross-validated one where every candidate has it and `crossed`
    (`selection_figures`). Test scores play no part."""
    from earlykd.decide import POLICIES
    order = {p: i for i, p in enumerate(POLICIES)}
    rank = {m: i for i, m in enumerate(METHODS)}
    groups: dict[tuple, list[tuple]] = {}
    partial = incomplete_variants(rows)
    for r in rows:
        if r["contender"].startswith("earlykd:") and r["status"] == "ok":
            _, variant, policy = r["contender"].split(":")
            if (r["dataset"], variant.partition("/")[2]) in partial:
                continue
            key = (r["dataset"], r["seed"], method_of(r["contender"]), family_of(variant))
            groups.setdefault(key, []).append((variant, policy, r))

    def best(found):
        cv = crossed and all(r.get("val_hm_cv") is not None for _, _, r in found)
        return min(found, key=lambda vpr: (*(-v for v in selection_figures(vpr[2], cv)),
                                           rank.get(vpr[0].split("/")[0], 99), "/native" in vpr[0],
                                           order.get(vpr[1], 99)))

    def row(contender, variant, policy, r):
        settings = json.loads(r["settings"]) if isinstance(r["settings"], str) else r["settings"]
        method = variant.split("/")[0]
        return {**r, "contender": contender, "method": method,
                "settings": json.dumps({**settings, "chosen_method": method, "chosen_variant": variant,
                                        "chosen_policy": policy})}
    out, overall = [], {}
    for (dataset, seed, method, family), found in sorted(groups.items()):
        out.append(row(f"earlykd:{method}{'/cf' if family else ''}:chosen", *best(found)))
        overall.setdefault((dataset, seed, family), []).extend(found)
    out += [row(f"earlykd:chosen{'/cf' if family else ''}", *best(found))
            for (_, _, family), found in sorted(overall.items())]
    return out


def method_of(contender: str) -> str:
    """The protocol's `method` column: earlykd's distillation method, or the peer's name."""
    return contender.split(":")[1].split("/")[0] if contender.startswith("earlykd:") else contender


def prefix_mode_of(row: dict) -> str:
    """An earlykd row's student prefix mode (from its stored settings); `raw` for a peer."""
    if not row["contender"].startswith("earlykd:"):
        return "raw"
    return json.loads(row.get("settings") or "{}").get("student", {}).get("mode", "")   # stored rows keep JSON text


def run_columns(record: dict) -> dict:
    """RUN_COLUMNS of an anytime student's run.json."""
    return {**{k: record["test"][k] for k in TEST_METRICS}, **{k: record[k] for k in RUN_FACTS}}


def run_columns_of(row: dict, root: Path) -> dict:
    """RUN_COLUMNS of an earlykd row: as stored with it, or else from its run directory; {} for a peer (no student
    run) or when neither has them."""
    if not row["contender"].startswith("earlykd:") or row["status"] != "ok":
        return {}
    if all(row.get(c) is not None for c in RUN_COLUMNS):
        return {c: row[c] for c in RUN_COLUMNS}
    settings = json.loads(row["settings"]) if isinstance(row["settings"], str) else row["settings"]
    run = root / settings.get("run_dir", "-") / "run.json"
    return run_columns(json.loads(run.read_text())) if run.is_file() else {}


def export_csv(store: Store, path: Path) -> int:
    """runs.csv: the issue's eight columns first, then the protocol's `method`, `prefix_mode` (docs/protocol.md;
    earlykd's students: their prefix mode; the peers read raw samples: `raw`) and RUN_COLUMNS (`run_columns_of`),
    then the rest."""
    import csv
    rows = store.rows()
    rows += chosen_rows(rows)
    rows.sort(key=lambda r: (r["dataset"], r["contender"], r["seed"]))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS[:8] + ("method", "prefix_mode") + RUN_COLUMNS + COLUMNS[8:])
        writer.writeheader()
        for r in rows:
            r = {**r, "method": r.get("method") or method_of(r["contender"]), "prefix_mode": prefix_mode_of(r),
                 **run_columns_of(r, path.parent)}
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return len(rows)


VARIANTS = ([], ["native"], ["cf"], ["native", "cf"])
DEFAULT_CONTENDERS = PEERS + tuple(f"earlykd:{m}{v}" for m in METHODS for v in ("", "/native"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    p.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS),
                   help="peers and earlykd:<method>[/native][/cf] groups (every registered policy; /native: the "
                        "student's grid is the series' T samples, run where T exceeds the teacher's grid; /cf: "
                        "calibrated on out-of-fold predictions; not in the default set)")
    p.add_argument("--epochs", type=int, default=EPOCHS, help="the anytime student's epochs")
    p.add_argument("--out", default="benchmarks/results/early")
    p.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per job")
    p.add_argument("--latency-series", type=int, default=LATENCY_SERIES)
    p.add_argument("--workers", type=int, default=1, help="jobs at a time, each one process of 1 thread")
    p.add_argument("--retry-failed", action="store_true", help="run failed and timed-out jobs again")
    p.add_argument("--replace-earlykd", action="store_true",
                   help="earlykd settings changed: drop the stored earlykd rows, keep the peers'")
    a = p.parse_args(argv)
    epochs = a.epochs
    contenders = a.contenders.split(",")
    bad = [c for c in contenders if c not in PEERS and not (c.startswith("earlykd:") and c.count(":") == 1
                                                              and c.split("/")[1:] in VARIANTS)]
    if bad:
        p.error(f"unknown contender {bad[0]!r} (peers: {', '.join(PEERS)}; or earlykd:<method>[/native][/cf])")
    root = Path(a.out).resolve()
    from earlykd.decide import POLICIES
    from earlykd.decide.base import CV_FOLDS
    # a new policy or rule of choice asks for new earlykd rows
    settings = {"peers": {"nonmyopic": NONMYOPIC, "latency_series": a.latency_series},
                "earlykd": {"epochs": epochs, "teacher": TEACHER, "student": STUDENT, "latency_series": a.latency_series,
                            "policies": sorted(POLICIES), "selection": f"cross-validated HM, {CV_FOLDS} folds"}}
    store = Store(root / "results.db", settings, a.replace_earlykd)
    todo = jobs(a.datasets.split(","), [int(s) for s in a.seeds.split(",")], contenders)
    counts = sweep(todo, store, root, epochs, a.latency_series, a.timeout, a.retry_failed, workers=a.workers)
    store.fill_run_columns(root)
    n = export_csv(store, root / "runs.csv")
    print(f"{counts['ok']} job(s) ran, {counts['failed']} failed, {counts['stored']} already stored; "
          f"{n} rows in {root / 'runs.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
