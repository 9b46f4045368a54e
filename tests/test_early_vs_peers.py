"""Bookkeeping of the `early` benchmark runner (benchmarks/early_vs_peers.py): failure rows, resume, timeouts,
the validation-only choice and the CSV export. Fake contenders on UnitTest; no network."""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import early_vs_peers as bench  # noqa: E402

CALLS = []


def fake_job(job, root, epochs, latency_series):
    """A cheap contender: 'broken' raises like a peer that breaks inside its library, the rest score."""
    dataset, group, seed = job
    CALLS.append(job)
    if group == "broken":
        raise ZeroDivisionError("float division by zero")
    if group == "slow":
        time.sleep(30)
    if group.startswith("earlykd:"):
        lift = 0.05 if group == "earlykd:dlf" else 0.0   # dlf's students look better on validation
        return [{"contender": f"{group}:{p}", "accuracy": acc, "earliness": 0.5, "hm": hm - lift, "fit_seconds": 1.0,
                 "decision_ms": 0.1, "decision_ms_max": 0.2, "val_hm": val + lift, "val_accuracy": 0.9, "settings": {}, "curve": [[1.0, acc]]}
                for p, acc, hm, val in (("threshold", 0.9, 0.64, 0.7), ("calibrated", 1.0, 0.67, 0.6))]
    return [{"contender": group, "accuracy": 0.8, "earliness": 0.4, "hm": 0.69, "fit_seconds": 2.0, "decision_ms": 0.2}]


def sweep(tmp_path, contenders, isolate=False, timeout=60.0, **kw):
    store = bench.Store(tmp_path / "results.db", {"test": 1})
    todo = bench.jobs(["UnitTest"], [0], contenders)
    return store, bench.sweep(todo, store, tmp_path, (1, 1), 1, timeout, job_fn=fake_job, isolate=isolate,
                              log=lambda _: None, **kw)


def test_a_peer_that_raises_is_a_failure_row_and_resume_skips_stored_rows(tmp_path):
    CALLS.clear()
    store, counts = sweep(tmp_path, ["broken", "teaser", "earlykd:kd"])
    assert counts == {"stored": 0, "ok": 2, "failed": 1}
    rows = {r["contender"]: r for r in store.rows()}
    assert rows["broken"]["status"] == "failed" and rows["broken"]["hm"] is None
    assert rows["broken"]["error"] == "ZeroDivisionError: float division by zero"
    assert rows["teaser"]["status"] == "ok" and rows["teaser"]["hm"] == pytest.approx(0.69)
    assert {"earlykd:kd:threshold", "earlykd:kd:calibrated"} <= set(rows)

    CALLS.clear()
    _, counts = sweep(tmp_path, ["broken", "teaser", "earlykd:kd"])
    assert counts == {"stored": 3, "ok": 0, "failed": 0} and not CALLS       # nothing ran again
    _, counts = sweep(tmp_path, ["broken", "teaser", "earlykd:kd"], retry_failed=True)
    assert CALLS == [("UnitTest", "broken", 0)] and counts["failed"] == 1   # only the failure is retried
    assert len(store.rows()) == 4


def test_export_adds_the_policy_chosen_on_validation_only(tmp_path):
    store, _ = sweep(tmp_path, ["broken", "earlykd:kd", "earlykd:dlf"])
    assert bench.export_csv(store, tmp_path / "runs.csv") == 8   # 5 stored, 3 chosen
    with open(tmp_path / "runs.csv", newline="") as fh:
        rows = {r["contender"]: r for r in csv.DictReader(fh)}
    assert list(next(iter(rows.values())))[:8] == ["dataset", "contender", "seed", "accuracy", "earliness", "hm",
                                                  "fit_seconds", "decision_ms"]
    chosen = rows["earlykd:kd:chosen"]
    assert float(chosen["hm"]) == pytest.approx(0.64)   # threshold: best on validation, though worse on test
    assert '"chosen_policy": "threshold"' in chosen["settings"]
    assert rows["broken"]["status"] == "failed"
    assert rows["broken"]["method"] == "broken" and chosen["method"] == "kd"
    assert rows["broken"]["prefix_mode"] == "raw"
    overall = rows["earlykd:chosen"]   # method and policy by validation HM: dlf's threshold, the worst on test
    assert overall["method"] == "dlf" and float(overall["hm"]) == pytest.approx(0.59)
    assert '"chosen_method": "dlf"' in overall["settings"] and '"chosen_policy": "threshold"' in overall["settings"]


def test_jobs_in_parallel_processes_store_their_rows_and_failures(tmp_path):
    store, counts = sweep(tmp_path, ["broken", "nonmyopic"], isolate=True, workers=2)
    assert counts == {"stored": 0, "ok": 1, "failed": 1}
    status = {r["contender"]: (r["status"], r["error"]) for r in store.rows()}
    assert status == {"broken": ("failed", "ZeroDivisionError: float division by zero"), "nonmyopic": ("ok", None)}


def test_a_job_past_its_time_limit_is_a_timeout_row(tmp_path):
    store, counts = sweep(tmp_path, ["slow"], isolate=True, timeout=3.0)
    assert counts["failed"] == 1
    (row,) = store.rows()
    assert row["status"] == "timeout" and "3 s" in row["error"]


def test_other_settings_in_the_same_database_are_refused(tmp_path):
    bench.Store(tmp_path / "results.db", {"epochs": [1, 1]})
    with pytest.raises(SystemExit, match="other settings"):
        bench.Store(tmp_path / "results.db", {"epochs": [2, 2]})


def test_new_earlykd_settings_replace_only_earlykd_rows_when_asked(tmp_path):
    path = tmp_path / "results.db"
    before = {"peers": {"nonmyopic": {"n_clusters": 2}}, "earlykd": {"epochs": 300}}
    store = bench.Store(path, before)
    store.put("GunPoint|teaser|0", [{"dataset": "GunPoint", "contender": "teaser", "seed": 0, "status": "ok"}])
    store.put("GunPoint|earlykd:kd|0", [{"dataset": "GunPoint", "contender": "earlykd:kd:threshold", "seed": 0,
                                         "status": "ok"}])
    after = {**before, "earlykd": {"epochs": 200}}
    with pytest.raises(SystemExit, match="earlykd results made with other settings.*--replace-earlykd"):
        bench.Store(path, after)
    with pytest.raises(SystemExit, match="holds peers and earlykd results"):
        bench.Store(path, {**after, "peers": {"nonmyopic": {"n_clusters": 3}}}, replace_earlykd=True)
    kept = bench.Store(path, after, replace_earlykd=True)
    assert [r["contender"] for r in kept.rows()] == ["teaser"]
    bench.Store(path, after)   # the new settings are now the stored ones
    flat = {"epochs": [150, 300], "nonmyopic": {"n_clusters": 2}, "latency_series": 10}
    assert bench.settings_parts(flat) == {"peers": {"latency_series": 10, "nonmyopic": {"n_clusters": 2}},
                                          "earlykd": {"latency_series": 10, "epochs": [150, 300]}}


def test_cuts_give_fewer_seeds_only_where_stated(monkeypatch):
    monkeypatch.setattr(bench, "CUTS", {("teaser", "ACSF1"): (0,)})
    todo = bench.jobs(["GunPoint", "ACSF1"], [0, 1, 2], ["teaser", "nonmyopic"])
    assert [s for d, g, s in todo if (d, g) == ("ACSF1", "teaser")] == [0]
    assert sum(1 for d, g, _ in todo if (d, g) == ("GunPoint", "teaser")) == 3
    assert sum(1 for d, g, _ in todo if g == "nonmyopic") == 6


def test_unequal_lengths_are_brought_to_the_longest_training_series_as_earlykd_does(monkeypatch):
    """Shorter series are held at their last value; a longer test series is cut at T, the reference length
    earlykd's prefixes and earliness use, so peers and earlykd see the same samples on one scale."""
    import numpy as np

    import earlykd.data
    import earlykd.early.assess  # noqa: F401 (imported before the patch: its modules bind the real load_raw)
    from earlykd.data import RawData, prepare
    train = [np.array([[1.0, 2.0, 3.0]]), np.array([[4.0, 5.0]])] * 2
    test = [np.array([[4.0, 5.0]]), np.array([[6.0, 7.0, 8.0, 9.0]])]
    raw = RawData("u", train, np.array(["a", "b"] * 2), test, np.array(["b", "a"]), "test")
    monkeypatch.setattr(earlykd.data, "load_raw", lambda cfg: raw)
    X, y, Xt, yt = bench.arrays("u")
    assert X.tolist() == [[[1, 2, 3]], [[4, 5, 5]]] * 2 and list(yt) == ["b", "a"]
    assert Xt.tolist() == [[[4, 5, 5]], [[6, 7, 8]]]
    assert Xt.shape[-1] == prepare(raw, length=3, val_fraction=0).reference_length


def test_the_choice_ranks_by_the_cross_validated_hm_when_every_candidate_has_it(tmp_path):
    """The calibration's own HM is the best of its search on the cases it searched; where the rows carry the
    cross-validated HM the chosen rows rank by it, and a group with one row without it falls back for all."""
    store, _ = sweep(tmp_path, ["earlykd:kd", "earlykd:dlf"])
    rows = store.rows()
    crossed = {"threshold": 0.5, "calibrated": 0.65}   # out of fold, calibrated is the better policy
    for r in rows:
        r["val_hm_cv"], r["val_accuracy_cv"] = crossed[r["contender"].split(":")[2]], 0.8
        r["val_hm_cv"] += 0.01 if r["contender"].startswith("earlykd:kd:") else 0.0
    chosen = {r["contender"]: json.loads(r["settings"]) for r in bench.chosen_rows(rows)}
    assert chosen["earlykd:dlf:chosen"]["chosen_policy"] == "calibrated"   # the own HM prefers threshold
    assert (chosen["earlykd:chosen"]["chosen_method"], chosen["earlykd:chosen"]["chosen_policy"]) == ("kd", "calibrated")
    rows[0]["val_hm_cv"] = None
    chosen = {r["contender"]: json.loads(r["settings"]) for r in bench.chosen_rows(rows)}
    assert chosen["earlykd:chosen"]["chosen_method"] == "dlf" and chosen["earlykd:chosen"]["chosen_policy"] == "threshold"


def test_the_native_grid_is_a_variant_chosen_on_validation_where_the_series_are_long(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "native_length", lambda d: 150 if d == "Long" else None)
    todo = bench.jobs(["Long", "Short"], [0], ["earlykd:kd", "earlykd:kd/native"])
    assert [(d, g) for d, g, _ in todo] == [("Long", "earlykd:kd"), ("Long", "earlykd:kd/native"), ("Short", "earlykd:kd")]
    store = bench.Store(tmp_path / "results.db", {"test": 1})
    bench.sweep(todo, store, tmp_path, 1, 1, 60.0, job_fn=fake_job, isolate=False, log=lambda _: None)
    rows = store.rows()
    lift = {"earlykd:kd/native:threshold": 0.1}   # the native grid looks better on validation on Long
    for r in rows:
        r["val_hm"] += lift.get(r["contender"], 0.0) if r["dataset"] == "Long" else 0.0
    chosen = {(r["dataset"], r["contender"]): r for r in bench.chosen_rows(rows)}
    long = chosen[("Long", "earlykd:kd:chosen")]
    assert long["method"] == "kd" and '"chosen_variant": "kd/native"' in long["settings"]
    assert '"chosen_variant": "kd"' in chosen[("Short", "earlykd:chosen")]["settings"]
    assert bench.method_of("earlykd:kd/native:threshold") == "kd"


def test_the_report_names_the_grid_validation_chose(tmp_path, monkeypatch):
    import early_vs_peers_report as report
    monkeypatch.setattr(bench, "native_length", lambda d: 150)
    store = bench.Store(tmp_path / "results.db", {"peers": {"nonmyopic": bench.NONMYOPIC, "latency_series": 1},
                                                  "earlykd": {"epochs": 1, "teacher": bench.TEACHER, "latency_series": 1,
                                                              "student": bench.STUDENT}})
    todo = bench.jobs(["UnitTest"], [0], ["teaser", "earlykd:kd", "earlykd:kd/native"])
    bench.sweep(todo, store, tmp_path, 1, 1, 60.0, job_fn=fake_job, isolate=False, log=lambda _: None)
    bench.export_csv(store, tmp_path / "runs.csv")
    text = report.summary(report.load(tmp_path / "runs.csv"), "", tmp_path)
    assert "earlykd:<method>/native:<policy>** (on UnitTest" in text and "| earlykd:kd/native:threshold |" in text
    assert "overall s0: kd:threshold." in text   # a validation tie goes to the teacher's grid
    assert "Unfinished grid variants" not in text   # the chosen rows in runs.csv are not students


def test_the_report_diagnoses_how_well_validation_ranked_the_candidates(tmp_path, monkeypatch):
    import early_vs_peers_report as report
    monkeypatch.setattr(bench, "native_length", lambda d: 150)
    store = bench.Store(tmp_path / "results.db", {"test": 1})
    todo = bench.jobs(["UnitTest"], [0], ["teaser", "earlykd:kd", "earlykd:kd/native"])
    bench.sweep(todo, store, tmp_path, 1, 1, 60.0, job_fn=fake_job, isolate=False, log=lambda _: None)
    bench.export_csv(store, tmp_path / "runs.csv")
    lines = report.selection_check(report.load(tmp_path / "runs.csv"), ["UnitTest"])
    # fake students: validation prefers threshold (.7 vs .6), test prefers calibrated (.67 vs .64)
    y = bench.arrays("UnitTest")[1]
    assert f"| UnitTest | {max(2, -(-len(y) // 5))} | 4 | -1.00 | 0.700 / 0.640 | 0.90 / 0.90 | 0.670 | 0.690 |" in lines


def test_an_unfinished_grid_variant_joins_no_choice(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "native_length", lambda d: 150)
    store = bench.Store(tmp_path / "results.db", {"test": 1})
    todo = bench.jobs(["Long"], [0, 1], ["earlykd:kd"]) + bench.jobs(["Long"], [0], ["earlykd:kd/native"])
    bench.sweep(todo, store, tmp_path, 1, 1, 60.0, job_fn=fake_job, isolate=False, log=lambda _: None)
    rows = store.rows()
    for r in rows:
        r["val_hm"] += 0.5 if "/native" in r["contender"] else 0.0   # it would win where it ran
    assert bench.incomplete_variants(rows) == {("Long", "native")}
    assert all('"chosen_variant": "kd"' in r["settings"] for r in bench.chosen_rows(rows))


RUN = {"test": {k: 0.5 + i / 100 for i, k in enumerate(bench.TEST_METRICS)}, "teacher_arch": "fcnx5",
       "student_arch": "fcn", "epochs": 300, "train_seconds": 12.5, "seconds_per_epoch": 0.04, "peak_memory_mb": 300.0,
       "config_hash": "abc", "version": "0.1.0"}


def test_runs_csv_has_the_students_protocol_columns_and_none_for_peers(tmp_path):
    import json
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text(json.dumps(RUN))
    store = bench.Store(tmp_path / "results.db", {"test": 1})
    store.put("j", [{"dataset": "D", "contender": "earlykd:kd:threshold", "seed": 0, "status": "ok", "hm": 0.5,
                     "val_hm": 0.5, "val_accuracy": 0.5, "settings": {"run_dir": "r"}},
                    {"dataset": "D", "contender": "teaser", "seed": 0, "status": "ok", "hm": 0.4}])
    bench.export_csv(store, tmp_path / "runs.csv")
    with open(tmp_path / "runs.csv", newline="") as fh:
        rows = {r["contender"]: r for r in csv.DictReader(fh)}
    for name in ("earlykd:kd:threshold", "earlykd:kd:chosen"):
        assert rows[name]["auc_prc"] == "0.5" and rows[name]["fidelity_top1"] == "0.55"
        assert rows[name]["student_arch"] == "fcn" and rows[name]["epochs"] == "300"
    assert all(rows["teaser"][c] == "" for c in bench.RUN_COLUMNS)


def test_out_of_fold_students_choose_among_themselves_and_count_once_complete(tmp_path, monkeypatch):
    import early_vs_peers_report as report
    monkeypatch.setattr(bench, "native_length", lambda d: None)
    monkeypatch.setattr(bench, "SEEDS", (0,))
    store = bench.Store(tmp_path / "results.db", {"peers": {"nonmyopic": bench.NONMYOPIC, "latency_series": 1},
                                                  "earlykd": {"epochs": 1, "teacher": bench.TEACHER, "latency_series": 1,
                                                              "student": bench.STUDENT}})
    todo = bench.jobs(["UnitTest"], [0], ["teaser", "earlykd:kd", "earlykd:base/cf"])
    bench.sweep(todo, store, tmp_path, 1, 1, 60.0, job_fn=fake_job, isolate=False, log=lambda _: None)
    rows = store.rows()
    for r in (r for r in rows if "/cf" in r["contender"]):
        r["val_hm"] += 0.5   # out-of-fold HM is not validation HM
    chosen = {r["contender"]: r for r in bench.chosen_rows(rows)}
    assert set(chosen) == {"earlykd:kd:chosen", "earlykd:chosen", "earlykd:base/cf:chosen", "earlykd:chosen/cf"}
    assert '"chosen_variant": "kd"' in chosen["earlykd:chosen"]["settings"]          # /cf rows join no other choice
    assert '"chosen_variant": "base/cf"' in chosen["earlykd:chosen/cf"]["settings"]
    assert bench.incomplete_variants(rows) == set()   # a family's needs are its own methods (kd is not in /cf)
    bench.export_csv(store, tmp_path / "runs.csv")
    loaded = report.load(tmp_path / "runs.csv")
    assert not report.crossfit_complete(loaded, "UnitTest")      # dlf/cf has not run
    text = report.summary(loaded, "", tmp_path)
    assert "complete on: none yet" in text and "earlykd:chosen/cf" not in text.split("## Per dataset")[0]
    bench.sweep(bench.jobs(["UnitTest"], [0], ["earlykd:dlf/cf"]), store, tmp_path, 1, 1, 60.0, job_fn=fake_job,
                isolate=False, log=lambda _: None)
    bench.export_csv(store, tmp_path / "runs.csv")
    text = report.summary(report.load(tmp_path / "runs.csv"), "", tmp_path)
    assert "complete on: UnitTest" in text and "| earlykd:chosen/cf |" in text.split("## Per dataset")[0]
    assert "Chosen on out-of-fold predictions (/cf): base/cf s0" in text


def test_crossfit_contenders_are_accepted_and_unknown_variants_refused(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--contenders", "earlykd:kd/cf/native", "--out", "/nonexistent"])
    assert "unknown contender 'earlykd:kd/cf/native'" in capsys.readouterr().err
    assert not any("/cf" in c for c in bench.DEFAULT_CONTENDERS)   # measured, it did not pay: on request only


def test_run_columns_are_stored_with_the_row_and_an_older_database_gains_them(tmp_path):
    import json
    import sqlite3
    old = sqlite3.connect(tmp_path / "results.db")   # the schema before the run columns
    old.execute(f"CREATE TABLE rows (id INTEGER PRIMARY KEY, job TEXT, {', '.join(bench.COLUMNS)}, "
                "UNIQUE (dataset, contender, seed))")
    old.execute("INSERT INTO rows (job, dataset, contender, seed, status, hm, val_hm, val_accuracy, settings) "
                "VALUES ('j', 'D', 'earlykd:kd:threshold', 0, 'ok', 0.5, 0.5, 0.5, ?)", (json.dumps({"run_dir": "r"}),))
    old.commit()
    old.close()
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text(json.dumps(RUN))
    store = bench.Store(tmp_path / "results.db", {"test": 1})
    assert store.fill_run_columns(tmp_path) == 1
    assert store.rows()[0]["fidelity_top1"] == 0.55 and store.rows()[0]["config_hash"] == "abc"
    store.put("k", [{"dataset": "D", "contender": "earlykd:base:threshold", "seed": 0, "status": "ok", "hm": 0.4,
                     "val_hm": 0.4, "val_accuracy": 0.4, **bench.run_columns({**RUN, "test": {
                         **RUN["test"], "fidelity_top1": 0.75}}), "settings": {"run_dir": "gone"}}])
    (tmp_path / "r" / "run.json").unlink()   # a fresh clone has no run directories
    bench.export_csv(store, tmp_path / "runs.csv")
    with open(tmp_path / "runs.csv", newline="") as fh:
        rows = {r["contender"]: r for r in csv.DictReader(fh)}
    assert rows["earlykd:kd:threshold"]["fidelity_top1"] == "0.55"
    assert rows["earlykd:base:threshold"]["fidelity_top1"] == "0.75"


def test_the_runner_stores_the_peers_and_earlykds_settings_apart(tmp_path, monkeypatch):
    """The settings main() stores: a changed rule of choice asks for new earlykd rows and leaves the peers'."""
    import sqlite3
    monkeypatch.setattr(bench, "sweep", lambda *a, **k: {"ok": 0, "failed": 0, "stored": 0})
    assert bench.main(["--out", str(tmp_path), "--datasets", "UnitTest", "--contenders", "teaser"]) == 0
    stored = json.loads(sqlite3.connect(tmp_path / "results.db").execute(
        "SELECT value FROM meta WHERE key = 'settings'").fetchone()[0])
    assert stored["peers"] == {"nonmyopic": bench.NONMYOPIC, "latency_series": bench.LATENCY_SERIES}
    assert stored["earlykd"]["selection"] == "cross-validated HM, 5 folds"


def test_the_report_sets_the_old_rule_of_choice_beside_the_cross_validated_one(tmp_path):
    import early_vs_peers_report as report

    def crossed_job(job, root, epochs, latency_series):   # out of fold, calibrated is the better policy
        return [{**r, "val_hm_cv": {"threshold": 0.5, "calibrated": 0.6}[r["contender"].split(":")[2]],
                 "val_accuracy_cv": 0.8} if job[1].startswith("earlykd:") else r
                for r in fake_job(job, root, epochs, latency_series)]
    store = bench.Store(tmp_path / "results.db", {"test": 1})
    todo = bench.jobs(["UnitTest"], [0], ["teaser", "earlykd:kd"])
    bench.sweep(todo, store, tmp_path, 1, 1, 60.0, job_fn=crossed_job, isolate=False, log=lambda _: None)
    bench.export_csv(store, tmp_path / "runs.csv")
    rows = report.load(tmp_path / "runs.csv")
    lines = report.rule_comparison(rows, ["UnitTest"])
    # cross-validated: calibrated (test .67); own HM: threshold (.64); teaser .69
    assert "| UnitTest | 0.670 | 0.640 | 0.690 |" in lines
    assert any(line.startswith("- `earlykd:chosen`: at or above the best peer on 0 of 1") for line in lines)
    assert report.rule_comparison([r for r in rows if r["contender"] == "teaser"], ["UnitTest"]) == []
