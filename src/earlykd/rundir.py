"""Run directories: their files, how they are opened and read, and the prepared data they share."""
from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import yaml

from . import __version__
from .data import Prepared, load_raw, prepare
from .errors import EarlykdError, check
from .train.checkpoint import RUN_KINDS, writable_dir

MODEL_FILE, STATE_FILE, RUN_FILE, METRICS_FILE = "model.safetensors", "last.safetensors", "run.json", "metrics.json"


@dataclass
class Run:
    """A finished run directory and its record (config, timings, validation and test metrics)."""
    path: Path
    record: dict

    @property
    def metrics(self) -> dict:
        return self.record["test"]


def versions() -> dict:
    import aeon
    import sklearn
    return {"earlykd": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "aeon": aeon.__version__, "python": platform.python_version()}


def resolve_device(name: str) -> torch.device:
    text = str(name)
    check(text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()),
          f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda"):
        check(torch.cuda.is_available(), f"device '{name}' requested but CUDA is not available")
    return torch.device(name)


def load_prepared(data_cfg: dict) -> Prepared:
    """Prepared tensors for a data config; kept in memory, since a sweep reuses them run after run
    (user files are keyed by their modification time too)."""
    files = [str(data_cfg[k]) for k in ("name", "test_path") if data_cfg.get(k) and Path(str(data_cfg[k])).is_file()]
    stamp = [Path(f).stat().st_mtime_ns for f in files]
    return _prepared(json.dumps({**data_cfg, "_stamp": stamp}, sort_keys=True, default=str))


@lru_cache(maxsize=8)
def _prepared(key: str) -> Prepared:
    cfg = json.loads(key)
    cfg.pop("_stamp")
    return prepare(load_raw(cfg), cfg["length"], cfg["val_fraction"], cfg["split_seed"])


def unfinished(path: Path) -> bool:
    """An interrupted run: a resumable state file, or an ensemble with members but no record yet."""
    return not (path / RUN_FILE).exists() and ((path / STATE_FILE).exists() or (path / "members").is_dir())


def open_run_dir(out: str | Path, resume: bool) -> Path:
    path = Path(out).resolve()  # stored absolute: the run is readable from any working directory
    if (path / RUN_FILE).exists():
        raise EarlykdError(f"{path} already holds a finished run; choose another --out")
    if unfinished(path) and not resume:
        raise EarlykdError(f"{path} holds an unfinished run; pass --resume to continue it or choose another --out")
    return writable_dir(path)


# what a resumed run may change: how it runs, and where its files are (compared by name: the project may have moved)
RUNTIME_KEYS = frozenset({"train.device", "train.threads", "train.progress", "train.checkpoint_every"})
PATH_KEYS = frozenset({"out", "teacher", "data.name", "data.test_path", "data.archive"})


def _differences(old, new, key: str = ""):
    """Dotted keys whose values differ between two configs, as 'key old -> new'."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in dict.fromkeys([*old, *new]):
            yield from _differences(old.get(k), new.get(k), f"{key}.{k}" if key else str(k))
    elif key in PATH_KEYS and old is not None and new is not None:
        if Path(str(old)).name != Path(str(new)).name:
            yield f"{key} {old} -> {new}"
    elif key not in RUNTIME_KEYS and old != new:
        yield f"{key} {old} -> {new}"


def check_resume(out: Path, cfg: dict) -> None:
    """A resumed run continues the interrupted one only with the settings it was started with (config.yaml); how
    it runs (device, threads, how often it saves its state) may change. Otherwise one line naming what differs."""
    path = out / "config.yaml"
    if not path.is_file():
        return
    diff = list(_differences(_read(path, yaml.safe_load), cfg))
    check(not diff, f"{out}: the interrupted run was started with other settings ({'; '.join(diff[:4])}"
                    f"{'; ...' if len(diff) > 4 else ''}); resume with the same settings or choose another --out")


def default_out(cfg: dict, kind: str) -> Path:
    data = Path(str(cfg["data"]["name"])).stem
    arch, seed = cfg["model"]["arch"], cfg["train"]["seed"]
    if kind == "teacher":
        return Path("runs") / f"teacher-{data}-{arch}-s{seed}"
    if kind == "anytime":
        return Path("runs") / f"anytime-{cfg['method']['name']}-{data}-{arch}-s{seed}"
    e, mode = cfg["prefix"]["earliness"], cfg["prefix"]["mode"]
    return Path("runs") / f"{cfg['method']['name']}-{data}-{arch}-e{e}-{mode}-s{seed}"


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _read(path: Path, parse):
    """A run file parsed (JSON or YAML), or one line naming the file."""
    try:
        return parse(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise EarlykdError(f"{path}: unreadable ({' '.join(str(exc).split())[:160]})") from None


def read_run(path: str | Path) -> tuple[dict, dict]:
    """-> (resolved config, run record) of a finished run directory; the teacher and data paths in the
    config point at files that exist where they can be found (see earlykd.paths)."""
    from .paths import locate
    path = Path(path)
    check(path.is_dir(), f"run directory not found: {path}")
    check((path / RUN_FILE).is_file(), f"{path}: not a finished earlykd run (no {RUN_FILE})")
    record, cfg = _read(path / RUN_FILE, json.loads), _read(path / "config.yaml", yaml.safe_load)
    check(isinstance(record, dict) and "kind" in record, f"{path / RUN_FILE}: not an earlykd run record (no 'kind')")
    check(record["kind"] in RUN_KINDS, f"{path / RUN_FILE}: not an earlykd run record (kind {record['kind']!r:.40} "
                                       f"is not one of {', '.join(RUN_KINDS)})")
    missing = [k for k in ("data", "prefix", "model", "method", "train") if not isinstance((cfg or {}).get(k), dict)] \
        if isinstance(cfg, dict) else ["all"]
    check(not missing, f"{path / 'config.yaml'}: not an earlykd run configuration (missing: {', '.join(missing)})")
    return locate(cfg, path), record


# files a run directory holds; an output the user names must not replace them
RUN_OWN_FILES = frozenset({"config.yaml", RUN_FILE, METRICS_FILE, MODEL_FILE, STATE_FILE, "decide.json", "model_card.md",
                           "cv.json", "oof_logits.safetensors"})


def check_output(path: str | Path) -> Path:
    """An output file the user named (predict --output, export --out): its folder exists, and it is not a folder,
    a device or pipe, nor a file of a run directory (which writing it would break)."""
    check(str(path).strip() != "", "the output file's name is empty")
    path = Path(path)
    target = path.resolve() if path.is_symlink() else path
    check(target.parent.is_dir(), f"cannot write {path}: folder {target.parent} does not exist")
    check(not target.exists() or target.is_file(), f"cannot write {path}: it exists and is not a regular file")
    in_run = (target.parent / RUN_FILE).is_file() or (target.parent / "config.yaml").is_file()
    own = target.name in RUN_OWN_FILES or target.name.startswith("teacher_outputs-")
    check(not (in_run and own), f"cannot write {path}: it is a file of the run directory {target.parent}")
    return target
