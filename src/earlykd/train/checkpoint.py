"""Checkpoints as safetensors: tensors plus JSON metadata; nothing is ever unpickled."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..errors import EarlykdError
from ..models import Classifier, build_model, use_level_norm
from ..prefix import MODES

FORMAT = "earlykd-checkpoint/1"
RUN_KINDS = ("teacher", "student", "anytime")   # what fitting.fit_and_save and early.run.train_early write
# Upper bounds of a model description: far above any model trained here (the benchmarks' largest: 6 layers,
# width 128, 20 levels), low enough that a damaged number cannot make building the model take hours or all
# memory before its weights are compared with the stored ones.
SPEC_BOUNDS = {"in_channels": 100_000, "n_classes": 100_000, "layers": 1000, "hidden": 16_384, "norm_levels": 10_000}


def atomic_write(path: Path, writer) -> None:
    """Write through a temporary file in the same folder, then rename over `path` (a symbolic link there is
    replaced; `rundir.check_output` resolves the links a user names). A folder, device or pipe is refused."""
    path = Path(path)
    if not path.is_symlink() and path.exists() and not path.is_file():
        raise EarlykdError(f"cannot write {path}: it exists and is not a regular file")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise EarlykdError(f"cannot write {path} ({exc.strerror})") from None
    os.close(fd)
    try:
        writer(tmp)
        # mkstemp makes 0600: a replaced file keeps its mode, a new one gets the mode of any other new file
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.is_file() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        raise EarlykdError(f"cannot write {path} ({exc.strerror})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def writable_dir(path: Path) -> Path:
    """Create `path` if needed and prove it takes files; a clear error otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise EarlykdError(f"output directory {path} is not writable ({exc.strerror})") from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, default=str) + "\n"))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    blob = save(tensors, metadata={"format": FORMAT, "meta": json.dumps(meta, default=str)})
    parts = _sorted_header(blob)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.writelines(parts)
    atomic_write(path, write)


def _sorted_header(blob: bytes) -> tuple:
    """(length, header, data) of safetensors bytes with the header's keys sorted: the library writes its metadata
    map in an order that changes from call to call, so equal tensors and metadata made files of different bytes
    (and a retrained teacher, bit-identical, another id). The header stays space-padded to 8 bytes, as the format
    allows; the data is a view of the library's bytes, not a copy."""
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    header = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little"), header, memoryview(blob)[8 + size:]


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(path)
    if not path.exists():
        raise EarlykdError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise EarlykdError(f"{path}: is not a file")
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise EarlykdError(f"{path}: corrupt or not a safetensors checkpoint ({str(exc).splitlines()[0][:80]})") from None
    if header.get("format") != FORMAT:
        raise EarlykdError(f"{path}: not an earlykd checkpoint (format {header.get('format')!r})")
    try:
        meta = json.loads(header["meta"])
    except (KeyError, ValueError):
        raise EarlykdError(f"{path}: checkpoint metadata missing or unreadable") from None
    if not isinstance(meta, dict):
        raise EarlykdError(f"{path}: checkpoint metadata is not a mapping")
    return tensors, meta


def save_model(path: Path, model: Classifier, meta: dict, extra: dict[str, torch.Tensor] | None = None) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(extra or {})
    save_tensors(path, tensors, {**meta, "model": model.spec()})


def model_from_tensors(tensors: dict, spec: dict, where: str, expect_arch: str | None = None) -> Classifier:
    lacking = [k for k in ("arch", "in_channels", "n_classes", "layers", "hidden") if k not in spec]
    if lacking:
        raise EarlykdError(f"{where}: the model description lacks {', '.join(lacking)}")
    if not isinstance(spec["arch"], str):
        raise EarlykdError(f"{where}: its model description is damaged (model.arch must be a name, got "
                           f"{spec['arch']!r:.60})")
    for key, high in SPEC_BOUNDS.items():
        if (key != "norm_levels" or spec.get(key) is not None) and not _count(spec.get(key), high):
            raise EarlykdError(f"{where}: its model description is damaged (model.{key} must be an integer in "
                               f"1..{high}, got {spec.get(key)!r:.60})")
    if expect_arch is not None and spec["arch"] != expect_arch:
        raise EarlykdError(f"{where}: checkpoint holds a '{spec['arch']}' model, expected '{expect_arch}'")
    try:
        model = build_model(spec["arch"], spec["in_channels"], spec["n_classes"], spec["layers"], spec["hidden"])
    except EarlykdError as exc:
        raise EarlykdError(f"{where}: its model description is damaged ({exc})") from None
    if spec.get("norm_levels"):
        use_level_norm(model, spec["norm_levels"])
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    want = model.state_dict()
    missing, unexpected = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    wrong = [k for k in want if k in state and state[k].shape != want[k].shape]
    problem = (f"missing tensor model.{missing[0]}" if missing else f"unexpected tensor model.{unexpected[0]}"
               if unexpected else f"tensor model.{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, expected "
               f"{tuple(want[wrong[0]].shape)}" if wrong else None)
    if problem:
        raise EarlykdError(f"{where}: weights do not fit a '{spec['arch']}' model ({problem})")
    model.load_state_dict(state, strict=True)
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise EarlykdError(f"{where}: the weights hold NaN or infinite values")
    return model


def load_model(path: Path, expect_arch: str | None = None) -> tuple[Classifier, dict, dict]:
    """-> (model in eval mode, metadata, all tensors)."""
    path = Path(path)
    tensors, meta = load_tensors(path)
    if not isinstance(meta.get("model"), dict):
        raise EarlykdError(f"{path}: checkpoint has no model description")
    model = model_from_tensors(tensors, meta["model"], str(path), expect_arch)
    mean, std = tensors.get("data.mean"), tensors.get("data.std")
    if (mean is not None or std is not None) and (mean is None or std is None or mean.shape != std.shape
                                                  or mean.dim() != 1 or not torch.isfinite(mean).all()
                                                  or not (std > 0).all()):
        raise EarlykdError(f"{path}: its training statistics (data.mean, data.std) are damaged")
    if meta.get("kind") in RUN_KINDS or path.name == "model.safetensors":   # a run's model file
        check_run_meta(meta, model, mean, path)
    return model.eval(), meta, tensors


def _count(value, high: float = math.inf) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high


def _earliness(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1


def check_run_meta(meta: dict, model: Classifier, mean: torch.Tensor | None, path: Path) -> None:
    """The metadata a run writes beside its model (fitting.fit_and_save, early.run.train_early), checked once
    here so that its readers may trust it; one line naming the first damaged field."""
    def need(ok, field: str, expected: str) -> None:
        if not ok:
            value = meta.get(field) if "." not in field else (meta.get("prefix") or {}).get(field.split(".")[1])
            raise EarlykdError(f"{path}: damaged checkpoint metadata ({field}: expected {expected}, got "
                               f"{value!r:.60})")
    kind, classes, prefix = meta.get("kind"), meta.get("classes"), meta.get("prefix")
    need(kind in RUN_KINDS, "kind", " or ".join(RUN_KINDS))
    need(isinstance(classes, list) and len(classes) == model.n_classes and all(isinstance(c, str) for c in classes),
         "classes", f"the names of the model's {model.n_classes} classes")
    need(_count(meta.get("length")), "length", "a positive integer")
    # absent only in checkpoints from before the prefix contract, which their readers name
    need(meta.get("reference_length") is None or _count(meta["reference_length"]), "reference_length",
         "a positive integer")
    need(isinstance(prefix, dict), "prefix", "a mapping of earliness, mode and channels")
    e = prefix.get("earliness")
    need(_earliness(e) if kind != "anytime" else isinstance(e, list) and e and all(map(_earliness, e)),
         "prefix.earliness", "a number in (0, 1]" if kind != "anytime" else "a list of numbers in (0, 1]")
    need(prefix.get("mode") in MODES, "prefix.mode", " or ".join(MODES))
    if mean is None:
        raise EarlykdError(f"{path}: its training statistics (data.mean, data.std) are missing")
    channels, n = prefix.get("channels"), mean.numel()
    need(channels is None or isinstance(channels, list) and channels and all(
        isinstance(c, int) and not isinstance(c, bool) and 0 <= c < n for c in channels),
        "prefix.channels", f"null or channel numbers within 0..{n - 1}")
    if model.in_channels != len(channels or range(n)):
        raise EarlykdError(f"{path}: damaged checkpoint (the model takes {model.in_channels} channel(s); data.mean "
                           f"and prefix.channels give {len(channels or range(n))})")
