"""Find the files a run directory refers to (teacher run, data files, archive) from anywhere.

New runs store absolute paths. A path that no longer exists (the project was moved or copied),
or a relative path of an older run (stored as typed, relative to the directory it was started
from), is looked for where it lies relative to the run's own directory: the stored `out` is the
anchor, so `runs/t` stored by a run whose out was `runs/kd` is found as RUN_DIR/../t.
"""
from __future__ import annotations

import os
from pathlib import Path


def _find(stored, out, run_dir: Path) -> str | None:
    if stored is None:
        return None
    path = Path(str(stored))
    if path.is_absolute() and path.exists():
        return str(path)
    if out is not None and Path(str(out)).is_absolute() == path.is_absolute():
        moved = (run_dir / os.path.relpath(path, str(out))).resolve()
        if moved.exists():
            return str(moved)
    if not path.is_absolute() and path.exists():  # an older run read from where it was started
        return str(path.resolve())
    return str(stored)


def locate(cfg: dict, run_dir: str | Path) -> dict:
    """The run's config with its teacher and data paths pointing at files that exist, where found."""
    run_dir = Path(run_dir).resolve()
    out = cfg.get("out")
    data = dict(cfg.get("data") or {})
    name = str(data.get("name"))
    if Path(name).suffix.lower() in (".npy", ".npz", ".csv") or "/" in name:
        data["name"] = _find(data["name"], out, run_dir)
    for key in ("test_path", "archive"):
        data[key] = _find(data.get(key), out, run_dir)
    return {**cfg, "data": data, "teacher": _find(cfg.get("teacher"), out, run_dir)}
