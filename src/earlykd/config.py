"""Run configuration: nested defaults, YAML files, dotted overrides, strict keys."""
from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import EarlykdError, check, did_you_mean, is_int, is_label_column
from .threads import MAX_THREADS

DEFAULTS: dict[str, Any] = {
    "data": {
        "name": None,            # bundled aeon dataset, archive dataset, or a file path (required)
        "test_path": None,       # test file for user data (.npz/.csv)
        "archive": None,         # root of a local UCR/UEA archive
        "label_column": 0,       # CSV: index or name of the label column
        "length": 100,           # every series is resampled to this length
        "val_fraction": 0.2,
        "split_seed": 0,
    },
    "prefix": {"earliness": None, "mode": "stretch", "channels": None},  # earliness: students must set it
    "model": {"arch": None, "layers": None, "hidden": None},  # None: teachers lstm, students the teacher's,
    "method": {"name": "base", "options": {}},
    "train": {
        "epochs": 100,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 1e-5,
        "schedule": "constant",   # constant | cosine | step (stepped once per epoch)
        "warmup": None,           # epochs of stage 1; None = the method's default
        "min_epochs": None,       # no selection before this epoch; None: teachers epochs // 4, students 0
        "patience": None,         # early stopping on the selection score
        "select": None,           # cv | loss | acc_loss (best val accuracy, ties by val loss); None: teachers cv, students loss
        "cv_folds": 5,            # teachers with select cv: stratified folds (fewer when a class is small)
        "seed": 0,
        "device": "auto",
        "threads": None,          # None: earlykd.threads.default_threads() (half the cores, at most 4)
        "checkpoint_every": 10,   # epochs between resumable state files (0: never)
        "progress": True,
    },
    "ensemble": {"size": 1, "combine": "mean"},  # teachers: seeds per architecture; mean of members or the best
    "early": {                    # `earlykd early`: how the anytime student draws (series, earliness) pairs
        "sampling": "uniform",    # uniform (one level per batch, every series once) | aria (docs/early.md)
        "level_norm": True,       # batch-norm statistics per checkpoint (docs/early.md); false: one running average
        "length": None,           # the student's grid (model steps); None: the teacher's data.length
        "crossfit": 0,            # K >= 2: calibrate on K-fold out-of-fold predictions of train + val (docs/early.md)
        "policies": None,         # policies to calibrate, the first the run's default; None: all, best validation HM
        "aria": {"bins": 10, "groups": "auto", "clusters": 4, "eps": 0.2, "beta": 0.1, "temperature": 1.0,
                 "warmup_share": 0.1, "weights": False, "clip": 5.0, "normalise": False},
    },
    "teacher": None,              # run directory of the teacher (students only)
    "out": None,
}

FREE_FORM = {"method.options"}   # checked against the method's own defaults


def _close(key: str, known: list[str]) -> str:
    return f" ({did_you_mean(key, known, 'known: ' + ', '.join(sorted(known)))})"


def _flat_keys(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in tree.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, dict) and full not in FREE_FORM:
            keys += _flat_keys(v, full + ".")
    return keys


def merge(base: dict, update: dict, where: str = "") -> dict:
    """Deep-merge `update` into a copy of `base`; unknown keys are errors."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        full = f"{where}{key}"
        if key not in base:
            raise EarlykdError(f"unknown config key '{full}'" + _close(full, _flat_keys(DEFAULTS)))
        if isinstance(base[key], dict) and full not in FREE_FORM:
            check(isinstance(value, dict), f"config key '{full}' must be a mapping, got {value!r}")
            out[key] = merge(base[key], value, full + ".")
        elif full in FREE_FORM:
            check(isinstance(value, dict), f"config key '{full}' must be a mapping, got {value!r}")
            out[key] = {**base[key], **value}
        else:
            out[key] = value
    return out


class Loader(yaml.SafeLoader):
    """Safe YAML that reads 1e-4, 5E3 and 1.5e3 as floats (YAML 1.1 wants a dot and a signed exponent) and refuses
    a key given twice in one mapping (PyYAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):   # complex keys are left to PyYAML
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key '{key}' is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                             re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
                             list("-+0123456789."))


def safe_load(text: str) -> Any:
    return yaml.load(text, Loader=Loader)


def parse_value(text: str) -> Any:
    try:
        return safe_load(text)
    except yaml.YAMLError:
        return text


def set_dotted(tree: dict, dotted: str, value: Any) -> dict:
    """Return {a: {b: value}} for 'a.b' (free-form sections keep deeper keys as one level)."""
    parts = dotted.split(".")
    check(all(parts), f"bad override key '{dotted}'")
    nested: Any = value
    for part in reversed(parts):
        nested = {part: nested}
    return _deep_update(tree, nested)


def _deep_update(tree: dict, update: dict) -> dict:
    out = copy.deepcopy(tree)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    check(path.is_file(), f"config file not found: {path}")
    try:
        data = safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise EarlykdError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                           "save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise EarlykdError(f"{path}:{where}: YAML syntax error: {problem}") from None
    check(isinstance(data, dict) or data is None, f"{path}: a config file must be a mapping")
    return data or {}


def resolve(files: list[str | Path] = (), overrides: dict | None = None, sets: list[str] = (),
            base: dict | None = None) -> dict:
    """Defaults <- base <- YAML files <- explicit overrides <- `--set a.b=value` strings."""
    cfg = merge(DEFAULTS, base or {})
    for f in files:
        cfg = merge(cfg, load_yaml(f))
    update: dict = {}
    for key, value in (overrides or {}).items():
        if value is not None:
            update = set_dotted(update, key, value)
    for item in sets:
        check("=" in item, f"--set expects key=value, got '{item}'")
        key, text = item.split("=", 1)
        update = set_dotted(update, key.strip(), parse_value(text.strip()))
    cfg = merge(cfg, update)
    for name, value in (("out", cfg["out"]), ("teacher", cfg["teacher"]), ("data.test_path", cfg["data"]["test_path"]),
                        ("data.archive", cfg["data"]["archive"])):   # before absolute_paths turns anything into text
        check(value is None or isinstance(value, (str, Path)), f"{name} must be a path or null, got {value!r}")
    cfg = absolute_paths(cfg)
    validate(cfg)
    return cfg


def conflicts(flags: dict, sets: list[str]) -> None:
    """A key given both by a flag ({key: (flag text, value)}) and by a --set string is an error."""
    for item in sets:
        key, _, text = item.partition("=")
        if key.strip() in flags and flags[key.strip()][1] is not None:
            flag, value = flags[key.strip()]
            if parse_value(text.strip()) != value:
                given = flag if isinstance(value, bool) else f"{flag} {value}"   # a switch is shown as typed
                raise EarlykdError(f"{key.strip()} is given twice: {given} and --set {item.strip()}; keep one")


def require(cfg: dict, kind: str) -> None:
    """What each kind of run must be told: a teacher its data, a student its earliness."""
    if kind == "teacher":
        check(cfg["data"]["name"] is not None, "a teacher needs --data: a bundled dataset (earlykd datasets), "
              "an archive dataset with --archive, or a .npz/.csv file with --test-path")
    else:
        check(cfg["prefix"]["earliness"] is not None, "a student needs --earliness: the share of each series it "
              "sees, in (0, 1], e.g. --earliness 0.4")
        check(not isinstance(cfg["prefix"]["earliness"], list), "a student takes one earliness; prefix.earliness "
              "holds a list of levels (an anytime run's config: train it with earlykd early)")


def check_teacher_prefix(cfg: dict) -> None:
    """A teacher trained on its own (not by compare, whose prefix is its students') takes no prefix settings."""
    p = cfg["prefix"]
    check(p["earliness"] in (None, 1, 1.0) and p["channels"] is None, "a teacher sees whole series and every "
          "channel: prefix.earliness and prefix.channels are for students (distill, early)")


def _absolute(path) -> str | None:
    return None if path is None else str(Path(str(path)).expanduser().resolve())


def absolute_paths(cfg: dict) -> dict:
    """Data files, archive, teacher and out as absolute paths, so that a run directory is
    readable from any working directory (earlykd.paths finds them again after a move)."""
    d = dict(cfg["data"])
    name = str(d["name"])
    if d["name"] is not None and (Path(name).suffix.lower() in (".npy", ".npz", ".csv") or "/" in name):
        d["name"] = _absolute(d["name"])
    d["test_path"], d["archive"] = _absolute(d["test_path"]), _absolute(d["archive"])
    return {**cfg, "data": d, "teacher": _absolute(cfg["teacher"]), "out": _absolute(cfg["out"])}


def _positive(value: Any, name: str, kind=int) -> None:
    ok = isinstance(value, kind) and not isinstance(value, bool) and value > 0 and math.isfinite(value)
    check(ok, f"{name} must be a positive {'integer' if kind is int else 'finite number'}, got {value!r}")


def check_whole(value: Any, name: str, low: int = 0, null: bool = False) -> None:
    """An integer (not a bool) >= low, or null where `null` allows it."""
    ok = (null and value is None) or (is_int(value) and value >= low)
    what = {0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer >= {low}")
    check(ok, f"{name} must be {what}{' or null' if null else ''}, got {value!r}")


def check_folds(value: Any, name: str) -> None:
    """Cross-fitting's K: 0 (calibrate on validation) or at least 2 folds."""
    check(is_int(value) and (value == 0 or value >= 2),
          f"{name} must be 0 (calibrate on validation) or a number of folds >= 2, got {value!r}")


SEED_LIMIT = 2 ** 31   # numpy and scikit-learn take seeds below 2**32; ensemble members and folds add to it


def check_seed(value: Any, name: str) -> None:
    check_whole(value, name)
    check(value < SEED_LIMIT, f"{name} must be below 2**31, got {value!r}")


def validate(cfg: dict) -> None:
    t, p, d = cfg["train"], cfg["prefix"], cfg["data"]
    check_seed(t["seed"], "train.seed")
    check_seed(d["split_seed"], "data.split_seed")
    check_whole(t["threads"], "train.threads", 1, null=True)
    check(t["threads"] is None or t["threads"] <= MAX_THREADS,
          f"train.threads must be at most {MAX_THREADS}, got {t['threads']!r}")
    arch = cfg["model"]["arch"]
    check(arch is None or isinstance(arch, str), "model.arch must be an architecture's name, or for a teacher names "
          f"separated by commas (fcn,inception), got {arch!r}")
    check_whole(t["checkpoint_every"], "train.checkpoint_every")
    check_whole(t["cv_folds"], "train.cv_folds", 2)
    check_whole(cfg["ensemble"]["size"], "ensemble.size", 1)
    check(isinstance(t["progress"], bool), f"train.progress must be true or false, got {t['progress']!r}")
    c = p["channels"]
    check(c is None or (isinstance(c, list) and c and len(set(c)) == len(c)
                        and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in c)),
          f"prefix.channels must be a list of distinct channel indices (0, 1, ...) or null, got {c!r}")
    _positive(t["epochs"], "train.epochs")
    _positive(t["batch_size"], "train.batch_size")
    _positive(t["lr"], "train.lr", (int, float))
    _positive(d["length"], "data.length")
    wd = t["weight_decay"]
    check(isinstance(wd, (int, float)) and not isinstance(wd, bool) and 0 <= wd < math.inf,
          f"train.weight_decay must be a finite number >= 0, got {wd!r}")
    col = d["label_column"]
    check(is_label_column(col),
          f"data.label_column must be a column index (0, 1, ...), a column name or null, got {col!r}")
    check(cfg["ensemble"]["combine"] in ("mean", "best"),
          f"ensemble.combine must be mean or best, got {cfg['ensemble']['combine']!r}")
    e = p["earliness"]
    one = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1  # noqa: E731
    check(e is None or one(e) or (isinstance(e, list) and len(e) > 0 and all(map(one, e))),
          f"prefix.earliness must be in (0, 1] (an anytime run's config: a list of such levels), got {e!r}")
    check(p["mode"] in ("stretch", "truncate"), f"prefix.mode must be stretch or truncate, got {p['mode']!r}")
    v = d["val_fraction"]
    check(isinstance(v, (int, float)) and 0 <= v < 1, f"data.val_fraction must be in [0, 1), got {v!r}")
    check(t["schedule"] in ("constant", "cosine", "step"),
          f"train.schedule must be constant, cosine or step, got {t['schedule']!r}")
    check(t["select"] in (None, "cv", "loss", "acc_loss"), f"train.select must be cv, loss or acc_loss, got {t['select']!r}")
    check(t["device"] in ("auto", "cpu", "cuda") or str(t["device"]).startswith("cuda:"),
          f"train.device must be auto, cpu, cuda or cuda:N, got {t['device']!r}")
    check(cfg["early"]["sampling"] in ("uniform", "aria"),
          f"early.sampling must be uniform or aria, got {cfg['early']['sampling']!r}")
    length = cfg["early"]["length"]
    check(length is None or (isinstance(length, int) and not isinstance(length, bool) and length >= 1),
          f"early.length must be a positive integer or null, got {length!r}")
    check_folds(cfg["early"]["crossfit"], "early.crossfit")
    names = cfg["early"]["policies"]
    check(names is None or names == "auto"
          or (isinstance(names, list) and len(names) > 0 and all(isinstance(n, str) for n in names)),
          f"early.policies must be a list of policy names, auto or null, got {names!r}")
    check_aria(cfg["early"])
    check(isinstance(cfg["early"]["level_norm"], bool),
          f"early.level_norm must be true or false, got {cfg['early']['level_norm']!r}")
    for key in ("warmup", "patience", "min_epochs"):
        check_whole(t[key], f"train.{key}", null=True)


def check_aria(early: dict) -> None:
    """early.aria's values, always; settings other than the defaults only with sampling aria (else ignored)."""
    from .early.aria import AriaConfig
    AriaConfig.of(early["aria"])
    changed = [k for k, v in early["aria"].items() if v != DEFAULTS["early"]["aria"].get(k)]
    if changed and early["sampling"] != "aria":
        raise EarlykdError(f"early.aria.{changed[0]} is set but early.sampling is uniform: ARIA settings need "
                           "--sampling aria (early.sampling: aria)")


def config_hash(cfg: dict, drop: tuple[str, ...] = ("out",)) -> str:
    """Stable hash of the settings that change results (not where they are written)."""
    core = {k: v for k, v in cfg.items() if k not in drop}
    if core.get("early") == DEFAULTS["early"]:
        del core["early"]  # the default sampling leaves every hash as it was before the key existed
    core["train"] = {k: v for k, v in core["train"].items() if k not in ("progress", "device", "threads")}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:12]
