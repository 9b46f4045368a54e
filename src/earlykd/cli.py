"""Command line: earlykd datasets | methods | teacher | distill | compare | evaluate | predict."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import EarlykdError

DEVICE_HELP = "auto (CUDA when present), cpu or cuda"


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run settings (each also settable in YAML or with --set)")
    g.add_argument("--config", action="append", default=[], metavar="YAML", help="config file(s), applied in order")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, e.g. train.epochs=50")
    g.add_argument("--arch", help="lstm, inception, fcn or resnet")
    g.add_argument("--layers", type=int, help="depth (LSTM layers, blocks)")
    g.add_argument("--hidden", type=int, help="width (LSTM units, filters)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--seed", type=int)
    g.add_argument("--device", help=DEVICE_HELP)
    g.add_argument("--threads", type=int, help="torch CPU threads")
    g.add_argument("--out", help="run directory (default runs/<name>)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="hide progress bars")


def _data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", help="bundled dataset name, archive dataset name, or a .npz/.csv training file")
    g.add_argument("--test-path", help="test file, with a .npz/.csv --data")
    g.add_argument("--archive", help="root of a local UCR/UEA archive")
    g.add_argument("--length", type=int, help="resample every series to this length (default 100)")
    g.add_argument("--val-fraction", type=float, help="stratified validation share of train (default 0.2)")


def _prefix_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("student")
    g.add_argument("--earliness", type=float, help="share of the series the student sees, in (0, 1]")
    g.add_argument("--mode", choices=["stretch", "truncate"], help="prefix mode")
    g.add_argument("--channels", help="comma-separated channel subset for the student, e.g. 0,1,2")
    g.add_argument("--warmup", type=int, help="warm-up epochs of two-stage methods")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="earlykd", description="Full-to-partial knowledge distillation for early "
                                 "time-series classification.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("datasets", help="bundled datasets with cases, channels, length and classes")
    p.add_argument("--archive", help="list the datasets of a local UCR/UEA archive instead")
    p = sub.add_parser("methods", help="registered distillation methods")
    p.add_argument("--markdown", action="store_true", help="print the README's Markdown table")
    p = sub.add_parser("teacher", help="train a teacher on full series")
    _data_args(p)
    _common(p)
    p = sub.add_parser("distill", help="train a student on prefixes from a teacher run")
    p.add_argument("--teacher", required=True, help="teacher run directory")
    p.add_argument("--method", help="distillation method (see `earlykd methods`)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="method option, e.g. temperature=4")
    _prefix_args(p)
    _common(p)
    p = sub.add_parser("compare", help="train a teacher, then one student per method; print one table")
    p.add_argument("--methods", default="base,kd,fitnets", help="comma-separated methods (default base,kd,fitnets)")
    p.add_argument("--student-epochs", type=int, help="student epochs (default: --epochs)")
    _data_args(p)
    _prefix_args(p)
    _common(p)
    p = sub.add_parser("evaluate", help="test-split metrics of a finished run (printed and JSON)")
    p.add_argument("run_dir")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p = sub.add_parser("predict", help="class and probabilities for new, possibly partial, series")
    p.add_argument("run_dir")
    p.add_argument("--input", required=True, help=".npy (cases, [channels,] length), .npz with X, or .csv rows")
    p.add_argument("--full", action="store_true", help="rows are complete series; the student takes its own prefix")
    p.add_argument("--output", help="write the predictions as CSV here instead of printing")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    from .bench.cli import add_commands
    add_commands(sub, COMMANDS)
    return ap


def _overrides(a: argparse.Namespace) -> dict:
    from .api import OPTIONS
    names = {"test_path", "archive", "length", "val_fraction", "earliness", "mode", "arch", "layers", "hidden",
             "method", "epochs", "batch_size", "lr", "warmup", "seed", "device", "threads", "progress", "out",
             "teacher"}
    out = {OPTIONS[n]: getattr(a, n) for n in names if getattr(a, n, None) is not None}
    if getattr(a, "data", None) is not None:
        out["data.name"] = a.data
    if getattr(a, "channels", None):
        try:
            out["prefix.channels"] = [int(c) for c in a.channels.split(",")]
        except ValueError:
            raise EarlykdError(f"--channels expects comma-separated integers, got '{a.channels}'") from None
    return out


def _sets(a: argparse.Namespace) -> list[str]:
    options = []
    for item in getattr(a, "option", []):
        if "=" not in item:
            raise EarlykdError(f"--option expects key=value, got '{item}'")
        options.append("method.options." + item)
    return list(a.set) + options


def _resolve(a: argparse.Namespace) -> dict:
    from .config import resolve
    return resolve(a.config, _overrides(a), _sets(a))


def _table(rows: list[dict], columns: list[str]) -> str:
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    return "-" if v is None else str(v)


def cmd_datasets(a) -> None:
    from .data import bundled_datasets, describe, load_raw
    if a.archive:
        root = Path(a.archive)
        if not root.is_dir():
            raise EarlykdError(f"archive folder not found: {root}")
        names = sorted(p.name for p in root.iterdir() if p.is_dir())
        cfg = {"archive": str(root)}
    else:
        names, cfg = list(bundled_datasets()), {}
    rows = []
    for name in names:
        try:
            rows.append(describe(load_raw({"name": name, **cfg})))
        except EarlykdError as exc:
            rows.append({"name": name, "train": f"unreadable: {exc}"})
    print(_table(rows, ["name", "train", "test", "channels", "length", "classes"]))


def methods_markdown() -> str:
    from .distill import METHODS
    lines = ["| method | what it adds to CE on the prefix | options (defaults) |", "|---|---|---|"]
    for name, cls in sorted(METHODS.items()):
        options = ", ".join(f"`{k}={v}`" for k, v in cls.defaults.items()) or "-"
        lines.append(f"| `{name}` | {cls.description}{' (two-stage)' if cls.two_stage else ''} | {options} |")
    return "\n".join(lines)


def cmd_methods(a) -> None:
    from .distill import METHODS
    if a.markdown:
        print(methods_markdown())
        return
    rows = [{"name": n, "two-stage": "yes" if c.two_stage else "", "options": ", ".join(f"{k}={v}" for k, v in c.defaults.items()),
             "description": c.description} for n, c in sorted(METHODS.items())]
    print(_table(rows, ["name", "two-stage", "options", "description"]))


ROW = ["run", "method", "earliness", "auc_prc", "accuracy", "fidelity_top1", "seconds_per_epoch", "best_epoch"]


def _row(run) -> dict:
    r = run.record
    return {"run": run.path.name, "method": r["method"] if r["kind"] == "student" else "teacher",
            "earliness": r["earliness"], **r["test"], "seconds_per_epoch": r["seconds_per_epoch"],
            "best_epoch": r["best_epoch"]}


def cmd_teacher(a) -> None:
    from . import runs
    run = runs.train_teacher(_resolve(a), resume=a.resume)
    print(_table([_row(run)], ROW))
    print(f"run directory: {run.path}")


def cmd_distill(a) -> None:
    from . import runs
    run = runs.distill(_resolve(a), resume=a.resume)
    print(_table([_row(run)], ROW))
    print(f"run directory: {run.path}")


def cmd_compare(a) -> None:
    """Teacher on full series, then each method's student; one table. Test split read once per run."""
    import copy
    import time

    from . import runs
    from .config import resolve
    from .distill.base import method_class
    started = time.perf_counter()
    cfg = _resolve(a)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    for m in methods:
        method_class(m)
    root = Path(cfg["out"] or Path("runs") / f"compare-{Path(str(cfg['data']['name'])).stem}")
    teacher_cfg = copy.deepcopy(cfg)
    teacher_cfg.update(out=str(root / "teacher"), teacher=None, method={"name": "base", "options": {}})
    teacher = runs.train_teacher(teacher_cfg, resume=a.resume)
    results = [teacher]
    for m in methods:
        s_cfg = copy.deepcopy(cfg)
        s_cfg.update(out=str(root / m), teacher=str(teacher.path))
        s_cfg["method"] = {"name": m, "options": cfg["method"]["options"] if m == cfg["method"]["name"] else {}}
        if a.student_epochs:
            s_cfg["train"]["epochs"] = a.student_epochs
        s_cfg = resolve(base=s_cfg)
        results.append(runs.distill(s_cfg, resume=a.resume))
    print(_table([_row(r) for r in results], ROW))
    print(f"run directory: {root}  (wall time {time.perf_counter() - started:.0f} s)")


def cmd_evaluate(a) -> None:
    from . import runs
    metrics = runs.evaluate_run(a.run_dir, a.device)
    print(_table([{"metric": k, "value": v} for k, v in metrics.items()], ["metric", "value"]))
    print(f"written: {Path(a.run_dir) / runs.METRICS_FILE}")


def cmd_predict(a) -> None:
    import csv
    import io

    from . import runs
    from .data.load import read_array_file
    series, _ = read_array_file(a.input, need_labels=False)
    labels, probs, notes = runs.predict(a.run_dir, series, a.full, what=a.input, device=a.device)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "label"] + [f"p_{c}" for c in notes["classes"]])
    for i, (label, p) in enumerate(zip(labels, probs)):
        w.writerow([i + 1, label] + [f"{v:.6f}" for v in p])
    if a.output:
        from .train.checkpoint import atomic_write
        try:
            atomic_write(Path(a.output), lambda tmp: Path(tmp).write_text(buf.getvalue()))
        except OSError as exc:
            raise EarlykdError(f"cannot write {a.output} ({exc.strerror})") from None
        print(f"written: {a.output}")
    else:
        sys.stdout.write(buf.getvalue())
    for line in notes["warnings"]:
        print(f"earlykd: warning: {line}", file=sys.stderr)


COMMANDS = {"datasets": cmd_datasets, "methods": cmd_methods, "teacher": cmd_teacher, "distill": cmd_distill,
            "compare": cmd_compare, "evaluate": cmd_evaluate, "predict": cmd_predict}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except EarlykdError as exc:
        print(f"earlykd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("earlykd: interrupted; continue with --resume and the same --out", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
