"""A finished anytime run (`earlykd early`) after training: its scores (`earlykd evaluate`) and its decisions on
a batch of series (`earlykd predict`).

A row of a file is a series as far as it has arrived. The run's policy decides at the checkpoints the row has
reached, exactly as a stream would (the prefix contract makes a row's inputs those of its stream); a row that
reached the last checkpoint is always decided there. A shorter row the policy has not stopped on gets the
student's provisional answer at the last checkpoint it reached, marked undecided.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import runs
from ..decide import Policy, build_policy
from ..data.prepare import clean_rows, longer_than_reference
from ..decide.base import softmax
from ..evaluate.new_data import class_indices, read_labelled
from ..teacher import Teacher
from ..train.checkpoint import write_json
from .anytime import LevelSplit
from .decider import Decider
from .run import load_decider, read_decide, scores_on_test


def stored_policies(run_dir: str | Path) -> dict[str, Policy]:
    """The run's calibrated policies, its default first."""
    stored = read_decide(Path(run_dir))
    names = [stored["default"]] + [n for n in stored["policies"] if n != stored["default"]]
    return {n: build_policy(stored["policies"][n]) for n in names}


def _all_outputs(decider: Decider, series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(checkpoints, cases, classes) logits and (checkpoints, cases, feature) features of whole series."""
    pairs = [decider.outputs(series, c) for c in range(len(decider.levels))]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def evaluate_anytime(run_dir: str | Path, device: str = "auto", test_path: str | Path | None = None,
                     label_column="run", warnings: list | None = None) -> dict:
    """Every calibrated policy's (HM, accuracy, earliness) and the metrics at every checkpoint (and their mean).
    Without `test_path`: on the run's test split, as `earlykd early` scored it (metrics.json is rewritten). With
    it: on the whole labelled series of that file, without teacher fidelity; nothing is written."""
    run_dir = Path(run_dir)
    cfg, _ = runs.read_run(run_dir)
    decider, policies = load_decider(run_dir), stored_policies(run_dir)
    levels = decider.levels
    if test_path is None:
        dev = runs.resolve_device(device)
        data = runs.load_prepared(cfg["data"])
        test = LevelSplit.of(data, "test", levels, decider.mode, decider.channels)
        logits, features = test.outputs(decider.student)
        teacher = Teacher.load(cfg["teacher"])
        teacher_logits = teacher.outputs(runs.load_prepared(teacher.cfg["data"]), dev)["test"].logits
        scores = scores_on_test(logits, data.labels["test"].numpy(), teacher_logits, levels, policies,
                                decider.earliness, features, test.ready)
        write_json(run_dir / runs.METRICS_FILE, scores)
        return scores
    series, labels = read_labelled(cfg, test_path, label_column)
    y = class_indices(labels, decider.classes, test_path)
    rows = clean_rows(series, [len(decider.mean)], str(test_path))
    shorter = sum(r.shape[-1] < decider.reference_length for r in rows)
    if shorter and warnings is not None:
        warnings.append(f"{shorter} row(s) have fewer samples than a whole series ({decider.reference_length}); "
                        "each is held at its last value, as for a series that ended")
    if warnings is not None:
        warnings += longer_than_reference([r.shape[-1] for r in rows], decider.reference_length)
    logits, features = _all_outputs(decider, rows)
    return scores_on_test(logits, y, None, levels, policies, decider.earliness, features, decider.ready(rows))


def ended(row: np.ndarray, length: int) -> np.ndarray:
    """A whole series that ended before `length` samples, held at its last column up to it (the view fills a
    channel's gap from its earlier values, so a NaN there is held too)."""
    return np.concatenate([row, np.repeat(row[:, -1:], max(0, length - row.shape[-1]), 1)], 1)


def decide_rows(decider: Decider, rows: list[np.ndarray]) -> list[dict]:
    """Per row: label, decided, checkpoint (-1: none reached), samples, earliness and probabilities."""
    out: list[dict | None] = [None] * len(rows)
    lengths = np.array([r.shape[-1] for r in rows])
    for n in np.unique(lengths):   # rows of one length reach the same checkpoints
        idx = np.flatnonzero(lengths == n)
        group = [rows[i] for i in idx]
        state = decider.start(len(group))
        decider.advance(state, group)
        reached = decider.reached(int(n))
        open_ = np.flatnonzero(state["stop"] < 0)
        if reached and len(open_):   # provisional: the last checkpoint reached
            state["probs"][open_] = softmax(decider.logits([group[i] for i in open_], reached - 1))
        for j, i in enumerate(idx):
            stop = int(state["stop"][j])
            at = stop if stop >= 0 else reached - 1
            probs = state["probs"][j] if at >= 0 else np.full(len(decider.classes), np.nan)
            out[i] = {"label": decider.classes[int(probs.argmax())] if at >= 0 else "", "decided": int(stop >= 0),
                      "checkpoint": at, "samples": int(decider.samples[at]) if at >= 0 else 0,
                      "earliness": float(decider.earliness[at]) if at >= 0 else 0.0, "probs": probs}
    return out


def predict_anytime(run_dir: str | Path, series: list[np.ndarray], policy: str | None = None,
                    what: str = "input", whole: bool = False) -> tuple[list, np.ndarray, dict]:
    """(labels, probabilities, notes) of an anytime run's decisions; notes['decisions'] holds each row's
    decided / checkpoint / samples / earliness, notes['warnings'] the rows that reached no checkpoint. `whole`:
    the rows are whole series, so one shorter than T has ended and is held at its last value up to T."""
    decider = load_decider(run_dir, policy)
    cleaned = clean_rows(series, [len(decider.mean)], what)
    rows = decide_rows(decider, [ended(r, decider.reference_length) for r in cleaned] if whole else cleaned)
    short = sum(r["checkpoint"] < 0 for r in rows)
    warnings = [f"{short} row(s) are shorter than the first checkpoint ({int(decider.samples[0])} samples): no "
                "prediction for them"] if short else []
    warnings += longer_than_reference([r.shape[-1] for r in cleaned], decider.reference_length)
    notes = {"classes": decider.classes, "warnings": warnings,
             "decisions": [{k: r[k] for k in ("decided", "checkpoint", "samples", "earliness")} for r in rows]}
    return [r["label"] for r in rows], np.stack([r["probs"] for r in rows]), notes
