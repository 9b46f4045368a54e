"""The commands on a finished run: `evaluate`, `predict` (a file, or `--stream` as samples arrive) and `export`."""
from __future__ import annotations

import math
import sys
from pathlib import Path

from .cli_text import rows_text, table, written
from .errors import EarlykdError, check


def _label_column(text: str | None):
    if text is None or text.lower() == "none":
        return None if text else "run"
    return int(text) if text.lstrip("-").isdigit() else text


def _finite_or_null(value):
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def cmd_evaluate(a) -> None:
    import json

    from . import runs, threads
    threads.apply(a.threads)
    warnings: list[str] = []
    metrics = runs.evaluate_run(a.run_dir, a.device, test_path=a.test_path, label_column=_label_column(a.label_column),
                                warnings=warnings)
    for line in warnings:
        print(f"earlykd: warning: {line}", file=sys.stderr)
    if a.json:   # strict JSON for other tools: a metric that is undefined (NaN) is null
        print(json.dumps(_finite_or_null(metrics), indent=2, allow_nan=False))
    elif "test_policies" in metrics:   # an anytime run: its policies' decisions, then the mean over checkpoints
        print(table([{"policy": k, **v} for k, v in metrics["test_policies"].items()],
                    ["policy", "hm", "accuracy", "earliness"]))
        print("\nmean over the checkpoints:")
        print(table([{"metric": k, "value": v} for k, v in metrics["test"].items()], ["metric", "value"]))
    else:
        print(table([{"metric": k, "value": v} for k, v in metrics.items()], ["metric", "value"]))
    if not a.test_path:
        written(Path(a.run_dir) / runs.METRICS_FILE)


def cmd_predict(a) -> None:
    if a.stream:
        return _predict_stream(a)
    if a.follow:
        raise EarlykdError("--follow applies to --stream only")
    if not a.input:
        raise EarlykdError("predict needs --input FILE (or --stream to read lines as they arrive)")
    from . import api
    from .rundir import check_output
    target = check_output(a.output) if a.output is not None else None   # before any work
    if target is not None and Path(a.input).exists():
        check(target.resolve() != Path(a.input).resolve(), f"--output {a.output} is the input file; write elsewhere")
    labels, probs, notes = api.predict_file(a.run_dir, a.input, a.full, _label_column(a.label_column), a.device,
                                            a.threads, a.policy)
    if notes["read"]:
        print(f"# {notes['read']}", file=sys.stderr)
    decisions = notes.get("decisions") or [{}] * len(labels)   # an anytime run's: when each row was decided
    rows = [{"row": i + 1, "label": label, **when, **{f"p_{c}": round(float(v), 6) for c, v in zip(notes["classes"], p)}}
            for i, (label, when, p) in enumerate(zip(labels, decisions, probs))]
    text = rows_text(rows, json_format=bool(a.output) and a.output.lower().endswith(".json"))
    if target is not None:
        from .train.checkpoint import write_text
        write_text(target, text)
        written(a.output)
    else:
        sys.stdout.write(text)
    for line in notes["warnings"]:
        print(f"earlykd: warning: {line}", file=sys.stderr)


def _predict_stream(a) -> None:
    from . import threads
    from .early.stream import load_stream_decider, run_stream
    for flag, value in (("--full", a.full), ("--label-column", a.label_column), ("--output", a.output)):
        if value:
            raise EarlykdError(f"{flag} does not apply to --stream (decisions go to standard output as they happen)")
    if a.follow and not a.input:
        raise EarlykdError("--follow needs --input FILE (standard input is read until it ends)")
    if not 0 < a.idle_timeout < math.inf:   # nan and inf would wait for ever
        raise EarlykdError(f"--idle-timeout must be a finite number of seconds above 0, got {a.idle_timeout}")
    if a.device not in ("auto", "cpu"):
        raise EarlykdError("--stream runs on the CPU (one series at a time); leave out --device")
    threads.apply(a.threads)
    decider = load_stream_decider(a.run_dir, a.policy)
    # bytes, decoded as UTF-8 line by line (whatever the locale), so that a bad byte names its line
    if a.input:
        try:
            source = open(a.input, "rb")
        except OSError as exc:
            raise EarlykdError(f"cannot read {a.input} ({exc.strerror})") from None
    else:
        source = getattr(sys.stdin, "buffer", sys.stdin)
    try:
        summary = run_stream(decider, source, follow=a.follow, idle_timeout=a.idle_timeout)
    except EarlykdError as exc:
        raise EarlykdError(f"{a.input or 'standard input'}: {exc}") from None
    finally:
        if a.input:
            source.close()
    note = f"# {summary['lines']} lines read; {summary['decided']} series decided"
    if summary["undecided"]:
        ids = ", ".join(summary["undecided"][:5]) + (", ..." if len(summary["undecided"]) > 5 else "")
        note += f"; {len(summary['undecided'])} undecided when the input ended ({ids})"
    if summary["ignored"]:
        note += f"; {summary['ignored']} lines for series already decided ignored"
    print(note, file=sys.stderr)


def cmd_export(a) -> None:
    from .export import export_run
    done = export_run(a.run_dir, a.format, a.out, a.opset)
    shape = ", ".join(map(str, done["input"]["shape"]))
    parity = ("onnxruntime not installed: parity not checked" if done["parity"] is None
              else f"max |onnxruntime - torch| {done['parity']:.1e} on random input")
    extra = done.get("checkpoint_input")
    extra = f" and '{extra['name']}' (an int64 scalar: the checkpoint's index)" if extra else ""
    print(f"{done['kind']} {done['arch']}: input '{done['input']['name']}' ({shape}) float32, preprocessed as "
          f"in the sidecar{extra}; outputs logits, probabilities; {parity}")
    written(done["model"])
    written(done["sidecar"])
