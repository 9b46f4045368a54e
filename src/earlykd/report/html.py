"""Write a report: runs.csv, tables (md/csv/tex), plots (png), report.md and one self-contained HTML file."""
from __future__ import annotations

import base64
import csv
import html
import time
from pathlib import Path

import pandas as pd

from ..bench.store import COLUMNS
from .plots import all_plots
from .tables import all_tables, labelled, load_runs, split

CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
       "table{border-collapse:collapse;margin:.5em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;"
       "text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}"
       ".note{color:#555;font-size:13px;max-width:900px}img{max-width:100%;margin:1em 0}")


def export_runs(df: pd.DataFrame, path: Path) -> Path:
    """One line per run: docs/protocol.md's columns first, then extras (the full record stays in the database)."""
    columns = [c for c in COLUMNS if c != "record"]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for row in df[columns].itertuples(index=False):
            writer.writerow(["" if pd.isna(v) else v for v in row])
    return path


def describe(df: pd.DataFrame, superseded: int, db: Path) -> list[str]:
    students, teachers = split(df)
    per_cell = students.groupby(["method", "dataset", "earliness"]).seed.nunique().groupby("method")
    seeds = {m: f"{lo}" if lo == hi else f"{lo}–{hi}" for m, lo, hi in zip(per_cell.min().index, per_cell.min(),
                                                                            per_cell.max())}
    lines = [f"{len(df)} runs from {db}: {len(teachers)} teacher(s), {len(students)} student(s)",
             f"datasets: {', '.join(sorted(df.dataset.unique()))}",
             f"earliness: {', '.join(f'{e:g}' for e in sorted(students.earliness.unique()))}; prefix mode: "
             f"{', '.join(sorted(df.prefix_mode.unique()))}; seeds per method (fewest–most in a dataset and earliness): "
             f"{', '.join(f'{m} {n}' for m, n in seeds.items())}",
             f"architectures: teacher {', '.join(sorted(df.teacher_arch.unique()))}, student "
             f"{', '.join(sorted(students.student_arch.unique()))}; earlykd {', '.join(sorted(df.version.unique()))}"]
    selected = students.selected.dropna()
    if len(selected):
        lines.append(f"options chosen by validation loss: {selected.value_counts().to_dict()}")
    if superseded:
        lines.append(f"{superseded} older row(s) for the same runs under other settings are left out")
    counts = students.groupby(["dataset", "earliness", "method"]).seed.nunique()
    short = counts[counts < counts.max()] if len(counts) else counts
    if len(short):   # an interrupted or partly failed sweep: its averages mix cells of unequal seed counts
        cells = sorted({f"{d} e={e:g}" for d, e, _ in short.index})
        lines.append(f"warning: {len(short)} (dataset, earliness, method) cell(s) have fewer than {counts.max()} "
                     f"seeds, on {', '.join(cells)}; averages over them mix unequal seed counts")
    teachers_used = students.dropna(subset=["teacher_id"]).groupby("dataset").teacher_id.nunique()
    mixed = [f"{d} ({n})" for d, n in teachers_used.items() if n > 1]
    if mixed:   # rows kept from sweeps of different settings: compare with care
        lines.append(f"warning: the students compared here were distilled from more than one teacher on "
                     f"{', '.join(mixed)}; their rows come from sweeps of different settings")
    return lines


# what a report writes; an earlier report's files of these names that this one does not write are removed
OWN = ("tables/summary.*", "tables/per_dataset_*.*", "tables/fidelity.*", "tables/teacher.*", "tables/timing.*",
       "plots/auc_prc_vs_earliness.png", "plots/seconds_per_epoch.png", "plots/critical_difference_e*.png")


def write_report(db: Path, out: Path) -> list[Path]:
    raw, superseded = load_runs(db)
    df = labelled(raw)
    tables = all_tables(df)   # before anything is written
    earlier = {p for pattern in OWN for p in out.glob(pattern)}
    (out / "tables").mkdir(parents=True, exist_ok=True)
    written = [export_runs(raw, out / "runs.csv")]
    for t in tables:
        for ext, text in (("md", t.markdown()), ("csv", t.csv()), ("tex", t.latex())):
            path = out / "tables" / f"{t.name}.{ext}"
            path.write_text(text)
            written.append(path)
    plots = all_plots(df, out / "plots")
    written += plots
    info = describe(df, superseded, db)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    md = ["# earlykd benchmark report", "", f"Generated {stamp}.", ""] + [f"- {line}" for line in info] + [""]
    md += [t.markdown() for t in tables] + [f"![{p.stem}]({p.relative_to(out)})" for p in plots]
    (out / "report.md").write_text("\n".join(md) + "\n")
    images = "".join(f"<h3>{html.escape(p.stem)}</h3><img alt='{html.escape(p.stem)}' src='data:image/png;base64,"
                     f"{base64.b64encode(p.read_bytes()).decode()}'>" for p in plots)
    body = ("<h1>earlykd benchmark report</h1><p>Generated " + stamp + ".</p><ul>"
            + "".join(f"<li>{html.escape(line)}</li>" for line in info) + "</ul>"
            + "".join(t.html() for t in tables) + "<h2>Plots</h2>" + images)
    (out / "report.html").write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>earlykd report</title>"
                                     f"<style>{CSS}</style></head><body>{body}</body></html>\n")
    for stale in earlier - set(written):   # e.g. the students' tables after their rows were dropped
        stale.unlink()
    return written + [out / "report.md", out / "report.html"]
