"""`earlykd export RUN --format onnx`: a student (per-earliness or anytime) as an ONNX graph on preprocessed input.

The graph maps the model input (batch, channels, steps), float32, to logits and probabilities.
Preprocessing stays outside it and is written into the ONNX metadata (key "earlykd") and a
sidecar JSON: `earlykd.prefix.student_view` (cut, fill, resample, standardise) with the stored
reference length T, model length L, mode, earliness and per-channel mean/std. Batch is a dynamic
axis; so is time for truncate-mode students, whose inputs grow with the prefix. An anytime student with
batch-norm statistics per checkpoint takes a second input, `checkpoint` (int64 scalar, the index of the
checkpoint in the stored earliness levels).
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .errors import EarlykdError, check, did_you_mean
from .models import set_level
from .prefix import observed_samples, prefix_steps

FORMATS = ("onnx",)
OPSET = 17
INPUT, CHECKPOINT, OUTPUTS = "series", "checkpoint", ("logits", "probabilities")
PARITY_LIMIT = 1e-4  # beyond this the export is wrong, not rounded
PREPROCESSING = (
    "Outside the graph, as earlykd.prefix.student_view: (1) cut each raw series to its first ceil(e*T) samples; "
    "(2) fill gaps with the channel's last observed value (a series that ended is held at its last value; "
    "before a channel's first observation, its training mean); (3) resample by linear interpolation: stretch "
    "spreads the k samples over all L steps, truncate keeps ceil(e*L) steps, step j at raw position "
    "j*(T-1)/(L-1), held at the last observed sample; (4) standardise (x - mean) / std per input channel "
    "(channel subset applied first); a value still missing becomes 0. Input float32 (batch, channels, steps).")


class _Graph(nn.Module):
    """The model's logits and probabilities; an anytime student with batch-norm statistics per checkpoint
    (models.levelnorm) also takes the checkpoint's index, an int64 scalar."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, checkpoint=None):
        if checkpoint is not None:
            set_level(self.model, checkpoint)
        logits = self.model(x).logits
        return logits, torch.softmax(logits, -1)


def _inputs(model: nn.Module, x: torch.Tensor, checkpoint: int = 0) -> tuple:
    """The graph's example inputs: the series, and the checkpoint where the model has one norm row per level."""
    return (x, torch.tensor(checkpoint)) if getattr(model, "norm_levels", None) else (x,)


def _need(package: str) -> None:
    check(importlib.util.find_spec(package) is not None,
          f"ONNX export needs the '{package}' package: pip install 'earlykd[export]'")


def export_model(model: nn.Module, path: Path, channels: int, steps: int, dynamic_steps: bool,
                 metadata: dict | None = None, opset: int = OPSET) -> Path:
    """Write `model` (a Classifier) as ONNX with a dynamic batch axis (and time axis if asked)."""
    _need("onnx")
    import onnx
    graph = _Graph(model.cpu().eval()).eval()
    axes = {INPUT: {0: "batch", **({2: "steps"} if dynamic_steps else {})}, **{o: {0: "batch"} for o in OUTPUTS}}
    kwargs = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    example = _inputs(model, torch.zeros(2, channels, steps))
    names = [INPUT, CHECKPOINT][:len(example)]
    path = Path(path)
    check(path.parent.is_dir(), f"cannot write {path}: folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, example, str(tmp), input_names=names, output_names=list(OUTPUTS),
                              dynamic_axes=axes, opset_version=opset, do_constant_folding=True, **kwargs)
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto)
    except Exception as exc:  # an unsupported operator, an opset the exporter lacks, ...
        tmp.unlink(missing_ok=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EarlykdError(f"ONNX export of the '{getattr(model, 'arch', '?')}' model failed "
                           f"({type(exc).__name__}: {first[:160]})") from None
    if metadata is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = "earlykd", json.dumps(metadata)
        proto.doc_string = PREPROCESSING
    try:
        onnx.save(proto, str(tmp))
        tmp.replace(path)
    except OSError as exc:
        raise EarlykdError(f"cannot write {path} ({exc.strerror})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def parity(model: nn.Module, path: Path, shapes: list[tuple[int, int, int]], seed: int = 0) -> float | None:
    """Largest |onnxruntime - torch| over logits and probabilities on random inputs; None without onnxruntime."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(seed)
    worst, graph = 0.0, _Graph(model.cpu().eval()).eval()
    levels = getattr(model, "norm_levels", None) or 1
    for i, shape in enumerate(shapes):
        inputs = _inputs(model, torch.randn(*shape, generator=g), (i * 7) % levels)   # several checkpoints
        with torch.no_grad():
            want = [t.numpy() for t in graph(*inputs)]
        got = session.run(list(OUTPUTS), {name: t.numpy() for name, t in zip((INPUT, CHECKPOINT), inputs)})
        worst = max(worst, *(float(np.abs(a - b).max()) for a, b in zip(want, got)))
    return worst


def run_metadata(run_dir: Path, meta: dict, tensors: dict, record: dict) -> dict:
    """What a user needs to feed the graph: the preprocessing settings and statistics, labels, policy."""
    prefix = meta["prefix"]
    subset = prefix["channels"]
    mean, std = tensors["data.mean"], tensors["data.std"]
    if subset:
        mean, std = mean[list(subset)], std[list(subset)]
    levels = prefix["earliness"] if isinstance(prefix["earliness"], list) else [prefix["earliness"]]
    steps = {str(e): prefix_steps(e, meta["length"]) if prefix["mode"] == "truncate" else meta["length"]
             for e in levels}
    out = {
        "format": "earlykd-onnx/1", "earlykd_version": __version__, "torch_version": torch.__version__,
        "run": str(run_dir), "kind": meta["kind"], "model": meta["model"], "classes": list(meta["classes"]),
        "input": {"name": INPUT, "dtype": "float32",
                  "shape": ["batch", len(mean), "steps" if prefix["mode"] == "truncate" else meta["length"]]},
        "outputs": list(OUTPUTS), "preprocessing": PREPROCESSING,
        "mode": prefix["mode"], "earliness": prefix["earliness"], "reference_length": meta["reference_length"],
        "length": meta["length"], "channels": subset, "all_channels": len(tensors["data.mean"]),
        "mean": [float(v) for v in mean], "std": [float(v) for v in std],
        "steps": steps, "samples": {str(e): observed_samples(e, meta["reference_length"]) for e in levels},
    }
    if meta["model"].get("norm_levels"):
        out["checkpoint_input"] = {"name": CHECKPOINT, "dtype": "int64", "shape": [],
                                   "meaning": "index in `earliness` of the checkpoint the input was cut at (the "
                                              "student keeps batch-norm statistics per checkpoint)"}
    if meta["kind"] == "anytime":
        decide = Path(run_dir) / "decide.json"
        out["policies"] = json.loads(decide.read_text()) if decide.is_file() else None
    out["method"] = record.get("method")
    return out


def export_run(run_dir: str | Path, fmt: str = "onnx", out: str | Path | None = None, opset: int = OPSET) -> dict:
    """Export a student run; -> {"model": path, "sidecar": path, "parity": max abs diff or None, ...}."""
    from .rundir import MODEL_FILE, check_output, read_run
    from .train import load_model
    from .train.checkpoint import write_text
    check(fmt in FORMATS, f"unknown export format '{fmt}' ({did_you_mean(fmt, FORMATS)})")
    run_dir = Path(run_dir)
    _, record = read_run(run_dir)
    kind = record.get("kind")
    check(kind in ("student", "anytime"), f"{run_dir}: is a {kind} run; export takes a student "
                                          "(a `distill` or `earlykd early` run)")
    _need("onnx")
    model, meta, tensors = load_model(run_dir / MODEL_FILE)
    check(meta.get("reference_length"), f"{run_dir}: trained before the prefix contract; train it again")
    info = run_metadata(run_dir, meta, tensors, record)
    channels, dynamic = info["input"]["shape"][1], meta["prefix"]["mode"] == "truncate"
    steps = max(info["steps"].values())
    path = check_output(out if out is not None else run_dir / "model.onnx")
    sidecar = path.with_suffix(".json")
    check(sidecar != path, f"--out {path}: the sidecar is written beside the model as <name>.json; give the model "
                           "another suffix (e.g. .onnx)")
    check_output(sidecar)
    check(not sidecar.exists() or _is_sidecar(sidecar), f"{sidecar} exists and is not an earlykd export's sidecar; "
                                                        "choose another --out (the sidecar goes beside it as <name>.json)")
    # the graph goes to a new file first: an existing model and its sidecar are replaced together, or not at all
    fresh = path.with_name(f".{path.name}.new")
    try:
        export_model(model, fresh, channels, steps, dynamic, info, opset)
        shapes = [(1, channels, steps), (5, channels, steps)]
        if dynamic:
            shapes += [(3, channels, min(info["steps"].values())), (2, channels, max(1, steps // 2))]
        diff = parity(model, fresh, shapes)
        if diff is not None and diff > PARITY_LIMIT:
            raise EarlykdError(f"{path}: ONNX output differs from torch by {diff:.2e} (above {PARITY_LIMIT:g}); "
                               "the exported graph is wrong for this model")
        write_text(sidecar, json.dumps({**info, "parity_max_abs_diff": diff}, indent=1) + "\n")
        fresh.replace(path)
    except OSError as exc:
        raise EarlykdError(f"cannot write {path} ({exc.strerror})") from None
    finally:
        fresh.unlink(missing_ok=True)
    return {"model": path, "sidecar": sidecar, "parity": diff, "input": info["input"], "kind": info["kind"],
            "arch": meta["model"]["arch"], "checkpoint_input": info.get("checkpoint_input")}


def _is_sidecar(path: Path) -> bool:
    """An earlier export's sidecar (replaced with its model), not a file of the user's."""
    try:
        return str(json.loads(path.read_text()).get("format", "")).startswith("earlykd-onnx/")
    except (OSError, ValueError, AttributeError):
        return False
