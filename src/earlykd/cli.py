"""Command line: earlykd datasets | methods | teacher | distill | compare | evaluate | predict | export (bench, report).

Heavy modules (torch, aeon, pandas) are imported by the commands that need them, never to build
the parser, so that `--help` and bad arguments answer at once.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from .cli_runs import cmd_evaluate, cmd_export, cmd_predict
from .cli_text import methods_markdown, methods_text, table
from .errors import EarlykdError

__all__ = ["main", "methods_markdown"]

DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N (default auto)"
THREADS_HELP = "torch CPU threads (default: half the cores, at most 4)"
LABEL_HELP = "CSV label column: index, header name, or none (default: as in training, first column)"


def _default(dotted: str):
    from .config import DEFAULTS
    value = DEFAULTS
    for part in dotted.split("."):
        value = value[part]
    return value


def add_training_args(g) -> None:
    """--epochs, --batch-size, --lr, --seed, --device and --threads, with their defaults in the help."""
    g.add_argument("--epochs", type=int, help=f"training epochs (default {_default('train.epochs')})")
    g.add_argument("--batch-size", type=int, help=f"mini-batch size (default {_default('train.batch_size')})")
    g.add_argument("--lr", type=float, help=f"Adam learning rate (default {_default('train.lr')})")
    g.add_argument("--seed", type=int, help=f"seed (default {_default('train.seed')})")
    g.add_argument("--device", help=DEVICE_HELP)
    g.add_argument("--threads", type=int, help=THREADS_HELP)


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run settings (each also settable in YAML or with --set)")
    g.add_argument("--config", action="append", default=[], metavar="YAML", help="config file(s), applied in order")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, e.g. train.epochs=50")
    g.add_argument("--arch", help="architecture (built in: lstm, inception, fcn, resnet; plugins add more; default lstm "
                   "for a teacher, the teacher's for a student); a teacher takes a comma list (an ensemble)")
    g.add_argument("--layers", type=int, help="depth (LSTM layers, blocks)")
    g.add_argument("--hidden", type=int, help="width (LSTM units, filters)")
    add_training_args(g)
    g.add_argument("--out", help="run directory (default runs/<name>)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="hide progress bars")


def _data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", help="bundled dataset name, archive dataset name, or a .npz/.csv training file (required)")
    g.add_argument("--test-path", help="test file, with a .npz/.csv --data")
    g.add_argument("--archive", help="root of a local UCR/UEA archive")
    g.add_argument("--length", type=int, help="resample every series to this length (default 100)")
    g.add_argument("--val-fraction", type=float, help="stratified validation share of train (default 0.2)")


def _prefix_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("student")
    g.add_argument("--earliness", type=float, help="share of the series the student sees, in [1/L, 1] with L the "
                   "models' length, data.length (100 by default) (required)")
    g.add_argument("--mode", choices=["stretch", "truncate"], help="prefix mode (default stretch)")
    g.add_argument("--channels", help="comma-separated channel subset for the student, e.g. 0,1,2")
    g.add_argument("--warmup", type=int, help="warm-up epochs of two-stage methods (default half the epochs)")


class Parser(argparse.ArgumentParser):
    """A usage error is one line and exit 2, as any other bad input (the usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"earlykd: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    ap = Parser(prog="earlykd", description="Full-to-partial knowledge distillation for early "
                                 "time-series classification.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("datasets", help="bundled datasets with cases, channels, length and classes")
    p.add_argument("--archive", help="list the datasets of a local UCR/UEA archive instead")
    p = sub.add_parser("methods", help="registered distillation methods")
    p.add_argument("--markdown", action="store_true", help="print the README's Markdown table")
    p = sub.add_parser("teacher", help="train a teacher on full series (one, or an ensemble stored as one)")
    _data_args(p)
    g = p.add_argument_group("teacher")
    g.add_argument("--ensemble", type=int, help="members per architecture, seeds seed, seed+1, ... (default 1); "
                   "several --arch values (fcn,inception,resnet) also make an ensemble")
    g.add_argument("--combine", choices=["mean", "best"], help="ensemble: mean probabilities (default) or the "
                   "member of best cross-validated score")
    g.add_argument("--select", choices=["cv", "acc_loss", "loss"], help="epochs by 5-fold CV on the training "
                   "split, then a refit (cv, default), or the checkpoint of best validation accuracy or loss")
    _common(p)
    p = sub.add_parser("distill", help="train a student on prefixes from a teacher run")
    p.add_argument("--teacher", help="teacher run directory (required unless a --config holds it)")
    p.add_argument("--method", help="distillation method (default base; see `earlykd methods`)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="method option, e.g. temperature=4")
    _prefix_args(p)
    _common(p)
    p = sub.add_parser("compare", help="train a teacher, then one student per method; print one table")
    p.add_argument("--methods", nargs="+", default=["base,kd,fitnets"],
                   help="methods, space- or comma-separated (default base,kd,fitnets)")
    p.add_argument("--seeds", nargs="+", help="student seeds, space- or comma-separated; more than one adds "
                   "the spread over seeds (default: --seed)")
    p.add_argument("--student-epochs", type=int, help="student epochs (default: --epochs)")
    _data_args(p)
    _prefix_args(p)
    _common(p)
    p = sub.add_parser("evaluate", help="test-split metrics of a finished run (printed and JSON)")
    p.add_argument("run_dir")
    p.add_argument("--test-path", help="score labelled series from this .npz/.csv instead of the test split "
                   "(metrics.json is left as it is)")
    p.add_argument("--label-column", help=LABEL_HELP)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p = sub.add_parser("predict", help="class and probabilities for new, possibly partial, series")
    p.add_argument("run_dir")
    p.add_argument("--input", help=".npy (cases, [channels,] length), .npz with X, or .csv rows (required); with "
                   "--stream, a file of lines series_id,value[,value...] (default: standard input)")
    p.add_argument("--label-column", help=LABEL_HELP)
    p.add_argument("--full", action="store_true", help="rows are complete series; the student takes its own prefix "
                   "(an anytime run: a row shorter than a whole series has ended, so every checkpoint is reached)")
    p.add_argument("--policy", help="stopping policy of an `earlykd early` run (default: the run's own); its rows "
                   "get the decision: decided, checkpoint, samples and earliness columns")
    p.add_argument("--output", help="write the predictions here (.json: JSON, otherwise CSV) instead of printing")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    g = p.add_argument_group("streaming (see docs/early.md)")
    g.add_argument("--stream", action="store_true", help="read samples as they arrive, one line each: series_id, then "
                   "the next sample(s) (univariate) or one value per channel; print each decision when it is taken")
    g.add_argument("--follow", action="store_true", help="keep reading --input FILE as it grows (tail -f)")
    g.add_argument("--idle-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="with --follow, stop after this long without new lines (default 10)")
    p = sub.add_parser("export", help="a student run as an ONNX graph on preprocessed input, with a sidecar JSON")
    p.add_argument("run_dir")
    p.add_argument("--format", default="onnx", help="export format (onnx, the default and only one)")
    p.add_argument("--out", help="output file (default RUN_DIR/model.onnx; the sidecar JSON goes beside it)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    from .bench.cli import add_commands
    add_commands(sub, COMMANDS)
    from .early.cli import add_commands as add_early_commands
    add_early_commands(sub, COMMANDS)
    ap.commands = sub.choices   # each command's parser, by name
    return ap


def _overrides(a: argparse.Namespace) -> dict:
    """{config key: (flag as typed, value)} for every flag given."""
    from .api import OPTIONS
    names = {"data", "test_path", "archive", "length", "val_fraction", "earliness", "mode", "arch", "layers",
             "hidden", "method", "epochs", "batch_size", "lr", "warmup", "seed", "device", "threads", "progress",
             "out", "teacher", "ensemble", "combine", "select"}
    out = {OPTIONS[n]: ("--no-progress" if n == "progress" else "--" + n.replace("_", "-"), getattr(a, n))
           for n in names if getattr(a, n, None) is not None}
    if getattr(a, "channels", None):
        try:
            out["prefix.channels"] = ("--channels", [int(c) for c in a.channels.split(",")])
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


def _resolve(a: argparse.Namespace, *kinds: str) -> dict:
    """Defaults <- --config files in order <- flags and --set (one key given both ways is an error)."""
    from .config import conflicts, require, resolve
    flags, sets = _overrides(a), _sets(a)
    conflicts(flags, sets)
    cfg = resolve(a.config, {k: v for k, (_, v) in flags.items()}, sets)
    for kind in kinds:
        require(cfg, kind)
    return cfg


def _list(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def cmd_datasets(a) -> None:
    from .data import bundled_datasets, describe, load_raw
    if a.archive:
        root = Path(a.archive)
        if not root.is_dir():
            raise EarlykdError(f"archive folder not found: {root}")
        names = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not names:
            raise EarlykdError(f"{root}: no dataset folders found (expected ROOT/Name/Name_TRAIN.ts|.tsv|.arff)")
        cfg = {"archive": str(root)}
    else:
        names, cfg = list(bundled_datasets()), {}
    rows = []
    for name in names:
        try:
            rows.append(describe(load_raw({"name": name, **cfg})))
        except EarlykdError as exc:
            rows.append({"name": name, "train": f"unreadable: {exc}"})
    print(table(rows, ["name", "train", "test", "channels", "length", "classes"]))


def cmd_methods(a) -> None:
    print(methods_markdown() if a.markdown else methods_text())


def _train(a, kind: str, *requires: str):
    from . import runs, threads
    from .compare import ROW, row
    cfg = _resolve(a, *requires)
    threads.apply(cfg["train"]["threads"])
    if kind == "teacher":   # a student's data is its teacher's, known once the teacher is read
        from .config import check_teacher_prefix
        check_teacher_prefix(cfg)
        for line in runs.load_prepared(cfg["data"]).warnings:   # read once: training takes it from the cache
            print(f"earlykd: warning: {line}", file=sys.stderr)
    run = runs.train_teacher(cfg, resume=a.resume) if kind == "teacher" else runs.distill(cfg, resume=a.resume)
    print(table([row(run)], ROW))
    print(f"run directory: {run.path}")


def cmd_teacher(a) -> None:
    _train(a, "teacher", "teacher")


def cmd_distill(a) -> None:
    _train(a, "student", "student")


def cmd_compare(a) -> None:
    """Teacher on full series, then each method's student (per seed); one table. Test split read once per run."""
    import time

    from . import compare, threads
    from .distill.base import method_class
    started = time.perf_counter()
    cfg = _resolve(a, "teacher", "student")
    methods = _list(a.methods)
    for m in methods:
        method_class(m)
    try:
        seeds = [int(s) for s in _list(a.seeds)] or [cfg["train"]["seed"]]
    except ValueError:
        raise EarlykdError(f"--seeds expects integers, got {' '.join(a.seeds)}") from None
    threads.apply(cfg["train"]["threads"])
    root, teacher, students = compare.run_all(cfg, methods, seeds, a.student_epochs, a.resume)
    if len(seeds) == 1:
        print(table([compare.row(r) for r in [teacher] + [found[0] for found in students.values()]], compare.ROW))
        print(f"one seed ({seeds[0]}): differences between methods smaller than the spread over seeds are noise; "
              "--seeds 0,1,2 shows that spread")
    else:
        print(table(*compare.spread_rows(teacher, students)))
        print(f"mean and standard deviation over seeds {', '.join(map(str, seeds))} (teacher: one run)")
    print(f"run directory: {root}  (wall time {time.perf_counter() - started:.0f} s)")


RESUMABLE = ("teacher", "distill", "compare", "early")
COMMANDS = {"datasets": cmd_datasets, "methods": cmd_methods, "teacher": cmd_teacher, "distill": cmd_distill,
            "compare": cmd_compare, "evaluate": cmd_evaluate, "predict": cmd_predict, "export": cmd_export}


def _allocation(exc: BaseException) -> str | None:
    """The size of a failed allocation (a MemoryError, or torch's CPU allocator refusing one), else None."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, MemoryError) and "DefaultCPUAllocator: can't allocate memory" not in text:
        return None
    found = re.search(r"allocate ([\d.]+ \w+)", text)
    return found.group(1) if found else "unknown size"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:   # named by the command's own parser, whose --help lists what it takes
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        COMMANDS[args.command](args)
        sys.stdout.flush()
    except EarlykdError as exc:
        print(f"earlykd: error: {exc}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:
        size = _allocation(exc)
        if size is None:
            raise
        print(f"earlykd: error: out of memory (an allocation of {size} failed); lower the model's size (--hidden, "
              "--layers), data.length or the batch size", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        advice = {"bench": "; re-run the same command to continue the sweep"}.get(
            args.command, "; continue with --resume and the same --out" if args.command in RESUMABLE else "")
        print(f"earlykd: interrupted{advice}", file=sys.stderr)
        return 130
    except BrokenPipeError:   # the reader stopped early (| head): end quietly, as a killed pipeline member
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())
