"""`earlykd predict RUN --stream`: decisions as samples arrive equal the batch decisions; bad lines are one line."""
from __future__ import annotations

import io
import json
import math
import queue
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import assert_clean_error, run_cli

from earlykd import cli
from earlykd.data import load_raw


@pytest.fixture(scope="module")
def test_series():
    raw = load_raw({"name": "UnitTest"})
    return np.stack(raw.X_test)  # (22, 1, 24)


@pytest.fixture(scope="module")
def anytime_run(teacher_dir, tmp_path_factory, test_series):
    """An `earlykd early` run whose threshold policy is set so that cases stop at different checkpoints
    (three epochs leave the calibrated setting degenerate)."""
    from earlykd.early.run import load_decider
    path = tmp_path_factory.mktemp("stream") / "anytime"
    assert cli.main(["early", "--teacher", str(teacher_dir), "--method", "kd", "--policy", "threshold,calibrated", "--levels", "0.25,0.5,0.75",
                     "--mode", "truncate", "--epochs", "3", "--batch-size", "8", "--no-progress",
                     "--out", str(path)]) == 0
    decider = load_decider(path)
    top = []
    for c in range(len(decider.levels) - 1):
        logits = decider.logits(list(test_series), c)
        p = np.exp(logits - logits.max(1, keepdims=True))
        top.append((p / p.sum(1, keepdims=True)).max(1))
    stored = json.loads((path / "decide.json").read_text())
    stored["policies"]["threshold"]["params"].update(probability=float(np.median(np.concatenate(top))),
                                                     consecutive=2)
    (path / "decide.json").write_text(json.dumps(stored))
    return path


def batch_decisions(run, X):
    """Labels, checkpoints and probabilities of EarlyClassifier.predict on whole series."""
    from earlykd import EarlyClassifier
    est = EarlyClassifier.from_run(run)
    labels, decided = est.predict(X)
    assert decided.all()
    return labels, est.decision_checkpoints().copy(), est.state_info["probs"].copy(), est.decider_


def interleaved(X, per_line: int = 1) -> str:
    """Round-robin over series, `per_line` samples of one series per line, with a header."""
    lines = ["series,value"]
    for start in range(0, X.shape[-1], per_line):
        for i, x in enumerate(X):
            lines.append(f"s{i}," + ",".join(repr(float(v)) for v in x[0, start:start + per_line]))
    return "\n".join(lines) + "\n"


def parse_output(out: str) -> dict[str, dict]:
    head, *rows = out.strip().splitlines()
    names = head.split(",")
    return {r.split(",")[0]: dict(zip(names, r.split(","))) for r in rows}


def check_equal(streamed: dict, labels, stops, probs, decider):
    assert len(set(stops)) > 1, "decisions must be spread over checkpoints for this test to mean anything"
    assert set(streamed) == {f"s{i}" for i in range(len(labels))}
    for i, (label, stop, p) in enumerate(zip(labels, stops, probs)):
        got = streamed[f"s{i}"]
        assert got["label"] == str(label) and int(got["checkpoint"]) == stop
        assert int(got["samples"]) == decider.samples[stop]
        assert np.allclose([float(got[f"p_{c}"]) for c in decider.classes], p, atol=2e-6)


def test_stream_from_stdin_equals_batch(anytime_run, test_series, capsys, monkeypatch):
    labels, stops, probs, decider = batch_decisions(anytime_run, test_series)
    monkeypatch.setattr(sys, "stdin", io.StringIO(interleaved(test_series)))
    code, out, err = run_cli(capsys, "predict", anytime_run, "--stream")
    assert code == 0, err
    streamed = parse_output(out)
    check_equal(streamed, labels, stops, probs, decider)
    # printed when the deciding sample arrived: the line of series i's n-th sample is 1 + (n - 1) * cases + i + 1
    for i, stop in enumerate(stops):
        assert int(streamed[f"s{i}"]["line"]) == 1 + (decider.samples[stop] - 1) * len(labels) + i + 1
    assert f"{len(labels)} series decided" in err


def test_stream_from_a_file_in_chunks_equals_batch(anytime_run, test_series, tmp_path, capsys):
    labels, stops, probs, decider = batch_decisions(anytime_run, test_series)
    path = tmp_path / "in.csv"
    path.write_text(interleaved(test_series, per_line=5))  # several samples per line cross checkpoints at once
    code, out, err = run_cli(capsys, "predict", anytime_run, "--stream", "--input", path)
    assert code == 0, err
    check_equal(parse_output(out), labels, stops, probs, decider)


def test_every_policy_of_the_run_streams(anytime_run, test_series, tmp_path, capsys):
    from earlykd import EarlyClassifier
    path = tmp_path / "in.csv"
    path.write_text(interleaved(test_series))
    code, out, _ = run_cli(capsys, "predict", anytime_run, "--stream", "--input", path, "--policy", "calibrated")
    assert code == 0
    est = EarlyClassifier.from_run(anytime_run, policy="calibrated")
    labels, _ = est.predict(test_series)
    streamed = parse_output(out)
    assert [streamed[f"s{i}"]["label"] for i in range(len(labels))] == [str(v) for v in labels]
    assert [int(streamed[f"s{i}"]["checkpoint"]) for i in range(len(labels))] == list(est.decision_checkpoints())


def test_per_earliness_student_classifies_at_its_prefix(student_dir, test_series, tmp_path, capsys):
    from earlykd import api
    labels, probs = api.predict(student_dir, test_series, full=True)
    path = tmp_path / "in.csv"
    path.write_text(interleaved(test_series))
    code, out, _ = run_cli(capsys, "predict", student_dir, "--stream", "--input", path)
    assert code == 0
    streamed = parse_output(out)
    keep = math.ceil(0.5 * test_series.shape[-1])
    for i, (label, p) in enumerate(zip(labels, probs)):
        got = streamed[f"s{i}"]
        assert got["label"] == label and int(got["samples"]) == keep
        assert np.allclose([float(v) for k, v in got.items() if k.startswith("p_")], p, atol=2e-6)


def test_multivariate_stream_equals_the_decider():
    """One line per time step with a value per channel; gaps and undecided series are handled."""
    import torch

    from earlykd.decide import build_policy
    from earlykd.early.decider import Decider
    from earlykd.early.stream import run_stream
    from earlykd.models import build_model
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 3, 20))
    X[1, 2, 4] = np.nan
    decider = Decider(build_model("fcn", 3, 2, 1, 4).eval(), build_policy("threshold"), [0.25, 0.5, 0.75, 1.0],
                      "truncate", None, 20, 16, torch.zeros(3), torch.ones(3), ["a", "b"])
    state = decider.start(len(X))
    decider.advance(state, list(X))
    top = [p.max() for p in state["probs"]]
    decider.policy.params.update(probability=float(np.median(top)), consecutive=1)
    state = decider.start(len(X))
    decider.advance(state, list(X))
    lines = [f"s{i}," + ",".join("" if np.isnan(v) else repr(float(v)) for v in X[i, :, t])
             for t in range(20) for i in range(len(X))] + ["late,1,2,3"]
    out = io.StringIO()
    summary = run_stream(decider, io.StringIO("\n".join(lines)), out)
    streamed = parse_output(out.getvalue())
    assert summary["undecided"] == ["late"] and summary["decided"] == len(X)
    for i in range(len(X)):
        assert int(streamed[f"s{i}"]["checkpoint"]) == state["stop"][i]
        assert streamed[f"s{i}"]["label"] == "ab"[state["probs"][i].argmax()]


@pytest.mark.parametrize("text, needles", [
    ("s0,1.0\ns0,abc\n", ["line 2, field 2", "'abc' is not a number"]),
    ("series,value\ns0,1\ns0,1,inf\n", ["line 3, field 3", "infinite"]),
    ("s0,1\ns0,1e308\n", ["line 2, field 2", "beyond float32's range"]),
    ("s0,1\ns0\n", ["line 2", "no value after the series id"]),
    ("s0,1\n,2\n", ["line 2, field 1", "empty series id"]),
])
def test_bad_lines_are_one_line(anytime_run, text, needles, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    code, _, err = run_cli(capsys, "predict", anytime_run, "--stream")
    assert_clean_error(code, err, *needles)


def test_bad_stream_settings_are_one_line(anytime_run, teacher_dir, student_dir, tmp_path, capsys):
    cases = [
        (["predict", teacher_dir, "--stream"], ["teacher run", "needs a student"]),
        (["predict", anytime_run, "--stream", "--policy", "treshold"], ["not calibrated", "threshold"]),
        (["predict", student_dir, "--stream", "--policy", "threshold"], ["per-earliness student"]),
        (["predict", anytime_run, "--stream", "--follow"], ["--follow needs --input"]),
        (["predict", anytime_run, "--stream", "--input", tmp_path / "none.csv"], ["cannot read"]),
        (["predict", anytime_run, "--stream", "--full"], ["--full does not apply"]),
        (["predict", anytime_run, "--follow", "--input", "x.csv"], ["--follow applies to --stream only"]),
        (["predict", anytime_run], ["needs --input"]),
        (["predict", tmp_path / "missing", "--stream"], ["not found"]),
        (["predict", anytime_run, "--stream", "--idle-timeout", "nan"], ["--idle-timeout", "finite"]),
        (["predict", anytime_run, "--stream", "--idle-timeout", "inf"], ["--idle-timeout", "finite"]),
    ]
    for args, needles in cases:
        code, _, err = run_cli(capsys, *args)
        assert_clean_error(code, err, *needles)


def _reader(stream, into: queue.Queue):
    for line in stream:
        into.put(line)
    into.put(None)


def test_real_process_prints_a_decision_before_the_series_ends(anytime_run, test_series):
    """stdin stays open: the first decision comes out as soon as its sample is in; EOF ends the process."""
    labels, stops, _, decider = batch_decisions(anytime_run, test_series)
    i = int(np.argmin(stops))
    needed = decider.samples[stops[i]]
    proc = subprocess.Popen([sys.executable, "-m", "earlykd.cli", "predict", str(anytime_run), "--stream"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    try:
        for t in range(needed):
            proc.stdin.write(f"s{i},{float(test_series[i, 0, t])!r}\n")
        proc.stdin.flush()
        assert lines.get(timeout=120).startswith("series,label")
        decision = lines.get(timeout=60).split(",")
        assert decision[0] == f"s{i}" and decision[1] == str(labels[i]) and int(decision[3]) == needed
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def test_follow_reads_a_growing_file_and_stops_when_idle(anytime_run, test_series, tmp_path):
    labels, stops, _, _ = batch_decisions(anytime_run, test_series)
    path = tmp_path / "grow.csv"
    text = interleaved(test_series).splitlines(keepends=True)
    path.write_text("".join(text[:100]))
    proc = subprocess.Popen([sys.executable, "-m", "earlykd.cli", "predict", str(anytime_run), "--stream",
                             "--input", str(path), "--follow", "--idle-timeout", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        with open(path, "a") as f:  # appended while the process follows, the last line in two writes
            f.write("".join(text[100:-1]))
            f.write(text[-1][:3])
            f.flush()
            time.sleep(0.5)
            f.write(text[-1][3:])
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    streamed = parse_output(out)
    assert [streamed[f"s{i}"]["label"] for i in range(len(labels))] == [str(v) for v in labels]


# -- the same anytime run in batch: `earlykd predict --input` and `earlykd evaluate` -------------------------------
def test_batch_predict_of_whole_series_gives_the_stream_decisions(anytime_run, test_series, tmp_path, capsys):
    labels, stops, probs, decider = batch_decisions(anytime_run, test_series)
    path = tmp_path / "whole.npy"
    np.save(path, test_series)
    code, out, err = run_cli(capsys, "predict", anytime_run, "--input", path)
    assert code == 0, err
    rows = {f"s{int(r['row']) - 1}": r for r in parse_output(out).values()}
    assert {r["decided"] for r in rows.values()} == {"1"}   # a whole series reaches the last checkpoint
    check_equal(rows, labels, stops, probs, decider)


def test_batch_predict_of_partial_series_decides_with_what_has_arrived(anytime_run, test_series):
    from earlykd import EarlyClassifier, api
    from earlykd.early.assess import predict_anytime
    est = EarlyClassifier.from_run(anytime_run)
    decider = est.decider_
    n = int(decider.samples[1])          # the rows hold the samples of the second checkpoint
    part = test_series[..., :n]
    labels, decided = est.predict(part)  # aeon's contract: -1 where the policy has not stopped yet
    got, probs, notes = predict_anytime(anytime_run, list(part))
    when = notes["decisions"]
    assert 0 < sum(d["decided"] for d in when) < len(part), "needs decided and open rows to mean anything"
    for i, d in enumerate(when):
        assert d["decided"] == int(decided[i]) and d["samples"] <= n
        if d["decided"]:
            assert got[i] == str(labels[i]) and d["checkpoint"] == est.decision_checkpoints()[i]
        else:   # provisional: the student's answer at the last checkpoint reached
            assert d["checkpoint"] == 1
            assert np.allclose(probs[i], np.exp(decider.logits([part[i]], 1))[0] /
                               np.exp(decider.logits([part[i]], 1))[0].sum(), atol=1e-6)
    short, _, notes = predict_anytime(anytime_run, [test_series[0, :, :1]])
    assert short == [""] and notes["decisions"][0]["checkpoint"] == -1 and "first checkpoint" in notes["warnings"][0]
    assert api.predict(anytime_run, part)[0] == got
    rows = api.decide(anytime_run, part)   # the API tells decisions from provisional answers, as the CLI does
    assert [r["label"] for r in rows] == got and [r["decided"] for r in rows] == [bool(d["decided"]) for d in when]
    assert [r["checkpoint"] for r in rows] == [d["checkpoint"] for d in when]
    assert np.allclose(np.stack([r["probabilities"] for r in rows]), probs)


def test_evaluate_recomputes_the_runs_scores_and_scores_a_labelled_file(anytime_run, tmp_path, capsys):
    from earlykd import api
    from earlykd.data import load_raw
    record = json.loads((anytime_run / "run.json").read_text())
    code, out, err = run_cli(capsys, "evaluate", anytime_run, "--json")
    assert code == 0, err
    scores = json.loads(out[:out.rindex("}") + 1])
    stored = json.loads((anytime_run / "decide.json").read_text())   # the fixture retuned threshold after training
    assert scores["test_policies"]["calibrated"] == pytest.approx(record["test_policies"]["calibrated"])
    assert scores["test"] == pytest.approx(record["test"]) and set(scores["test_policies"]) == set(stored["policies"])
    raw = load_raw({"name": "UnitTest"})
    path = tmp_path / "test.npz"
    np.savez(path, X=np.stack(raw.X_test), y=np.asarray(raw.y_test))
    on_file = api.evaluate(anytime_run, test_path=path)
    for name, decided in scores["test_policies"].items():   # the same series, read from a file
        assert on_file["test_policies"][name] == pytest.approx(decided)
    assert "fidelity_top1" not in on_file["test"]
    assert on_file["test"]["accuracy"] == pytest.approx(scores["test"]["accuracy"])


def test_predict_full_decides_short_whole_series_as_evaluate_scores_them(anytime_run, test_series, tmp_path):
    """Unequal-length data: a whole series shorter than T has ended. predict/decide --full reach every checkpoint
    for it and equal evaluate --test-path; without --full the same rows are series still arriving."""
    from earlykd import api
    from earlykd.data import load_raw
    labels = np.asarray(load_raw({"name": "UnitTest"}).y_test)
    short = test_series[..., :14]
    path = tmp_path / "short.npz"
    np.savez(path, X=short, y=labels)
    scores = api.evaluate(anytime_run, test_path=path)["test_policies"]
    for name, scored in scores.items():
        rows = api.decide(anytime_run, list(short), full=True, policy=name)
        assert all(r["decided"] for r in rows)
        assert scored["accuracy"] == pytest.approx(np.mean([r["label"] == str(y) for r, y in zip(rows, labels)]))
        assert scored["earliness"] == pytest.approx(np.mean([r["earliness"] for r in rows]))
    assert not all(r["decided"] for r in api.decide(anytime_run, list(short)))   # still arriving: some wait


def test_batch_predict_errors_are_one_line(anytime_run, student_dir, test_series, tmp_path, capsys):
    path = tmp_path / "whole.npy"
    np.save(path, test_series)
    code, _, err = run_cli(capsys, "predict", anytime_run, "--input", path, "--policy", "nope")
    assert_clean_error(code, err, "policy 'nope' was not calibrated")
    code, _, err = run_cli(capsys, "predict", student_dir, "--input", path, "--policy", "calibrated")
    assert_clean_error(code, err, "applies to `earlykd early` runs")
    np.save(path, np.zeros((3, 2, 24)))
    code, _, err = run_cli(capsys, "predict", anytime_run, "--input", path)
    assert_clean_error(code, err, "row 1: 2 channel(s)")


def test_an_anytime_run_has_a_model_card_with_its_policies(anytime_run):
    card = (anytime_run / "model_card.md").read_text()
    record = json.loads((anytime_run / "run.json").read_text())
    assert "# Model card: anytime UnitTest" in card and "4 checkpoints, earliness 0.25 to 1.0" in card
    calibrated = record["test_policies"]["calibrated"]
    val = record["policies_val"]["calibrated"]
    assert f"| calibrated | {val['hm']:.4f} | {val['cv_hm']:.4f} | {calibrated['hm']:.4f} |" in card
    assert "calibrated on the validation split" in card


def test_predict_json_output_is_strict_json_with_null_where_a_row_has_no_answer(anytime_run, test_series, tmp_path,
                                                                                capsys):
    rows_short = tmp_path / "short.csv"   # a row of one sample reaches no checkpoint
    rows_short.write_text("1.0\n" + "\n".join(",".join(map(str, r)) for r in test_series[:2, 0, :]) + "\n")
    code, _, err = run_cli(capsys, "predict", anytime_run, "--input", rows_short, "--label-column", "none",
                           "--output", tmp_path / "p.json")
    assert code == 0, err
    text = (tmp_path / "p.json").read_text()

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    out = json.loads(text, parse_constant=refuse)
    assert out[0]["label"] == "" and all(v is None for k, v in out[0].items() if k.startswith("p_"))
    assert all(isinstance(v, float) for k, v in out[1].items() if k.startswith("p_"))
