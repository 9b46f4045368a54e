"""Result tables in the paper's format, rendered as Markdown, CSV, LaTeX and HTML."""
from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..bench.store import COLUMNS, INTEGER, KEY, REAL, Store
from ..errors import EarlykdError, check

TEACHER = "teacher"


def load_runs(db) -> tuple[pd.DataFrame, int]:
    """Rows of the results database; of rows for the same run (dataset, method, earliness, prefix mode,
    seed) under different settings the latest is kept. -> (rows, number superseded)."""
    store = Store(db, create=False)
    try:
        rows = store.rows()
    finally:
        store.close()
    check(rows, f"{db}: no finished runs yet")
    for column in [c for c in COLUMNS if c in INTEGER | REAL]:   # NULL is a NaN (sqlite stores NaN so): allowed
        bad = [r for r in rows if r[column] is not None and not isinstance(r[column], (int, float))]
        if bad:
            raise EarlykdError(f"{db}: column {column} holds {bad[0][column]!r:.40}, not a number ({len(bad)} "
                               f"row(s), e.g. {bad[0]['method']} on {bad[0]['dataset']})")
    df = pd.DataFrame(rows, columns=COLUMNS)
    for column in INTEGER | REAL:
        if df[column].dtype == object:   # only NULLs: NaN, so that means and formats take it
            df[column] = pd.to_numeric(df[column])
    kept = df.drop_duplicates([k for k in KEY if k != "job_hash"], keep="last")
    return kept.reset_index(drop=True), len(df) - len(kept)


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    """Method labels for tables and plots: with the prefix mode when the results mix modes."""
    if df["prefix_mode"].nunique() < 2:
        return df
    return df.assign(method=[m if m == TEACHER else f"{m} ({p})" for m, p in zip(df.method, df.prefix_mode)])


@dataclass
class MeanStd:
    mean: float
    std: float

    def __str__(self) -> str:
        if math.isnan(self.mean):
            return "-"
        return f"{self.mean:.3f}" if math.isnan(self.std) else f"{self.mean:.3f} ± {self.std:.3f}"


@dataclass
class Table:
    name: str
    title: str
    columns: list[str]
    rows: list[list]
    note: str = ""
    bold: set = field(default_factory=set)  # (row, column) of best cells

    def cells(self) -> list[list[str]]:
        return [[_fmt(v) for v in row] for row in self.rows]

    def markdown(self) -> str:
        cells = [[f"**{c}**" if (i, j) in self.bold else c for j, c in enumerate(r)]
                 for i, r in enumerate(self.cells())]
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join("---" for _ in self.columns) + "|"] + ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines + (["", self.note] if self.note else [])) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows([[v if isinstance(v, (int, float)) and not isinstance(v, bool) else _fmt(v) for v in row]
                          for row in self.rows])
        return buf.getvalue()

    def latex(self) -> str:
        def tex(text: str) -> str:
            for old, new in (("\\", "\\textbackslash{}"), ("_", "\\_"), ("%", "\\%"), ("&", "\\&"), ("#", "\\#"),
                             ("±", "$\\pm$")):
                text = text.replace(old, new)
            return text
        body = [" & ".join(f"\\textbf{{{tex(c)}}}" if (i, j) in self.bold else tex(c) for j, c in enumerate(r)) + r" \\"
                for i, r in enumerate(self.cells())]
        return "\n".join([f"% {self.title}", "\\begin{tabular}{l" + "r" * (len(self.columns) - 1) + "}", "\\toprule",
                          " & ".join(tex(c) for c in self.columns) + r" \\", "\\midrule", *body, "\\bottomrule",
                          "\\end{tabular}"]) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td><b>{html.escape(c)}</b></td>" if (i, j) in self.bold
                                        else f"<td>{html.escape(c)}</td>" for j, c in enumerate(r)) + "</tr>"
                       for i, r in enumerate(self.cells()))
        note = f"<p class='note'>{html.escape(self.note)}</p>" if self.note else ""
        return f"<h3>{html.escape(self.title)}</h3><table><tr>{head}</tr>{body}</table>{note}"


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _int(v) -> int | None:
    return None if pd.isna(v) else int(v)


def _best(values, column: int) -> set:
    """{(row, column)} of the best (highest) values, ties included."""
    values = np.asarray(values, dtype=float)
    if np.isnan(values).all():
        return set()
    return {(i, column) for i in np.flatnonzero(np.isclose(values, np.nanmax(values)))}


def split(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return df[df.method != TEACHER], df[df.method == TEACHER]


def methods_of(students: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(students.method))


def per_dataset_means(students: pd.DataFrame, e: float, metric: str = "auc_prc") -> pd.DataFrame:
    """datasets x methods: the mean over seeds at earliness e, datasets where every method has a result."""
    at = students[students.earliness == e]
    means = at.pivot_table(index="dataset", columns="method", values=metric, aggfunc="mean")
    return means.reindex(columns=methods_of(students)).dropna()


def teacher_scores(teachers: pd.DataFrame, metric: str = "auc_prc") -> pd.Series:
    return teachers.groupby("dataset")[metric].mean()


def _mean_std(values: pd.Series) -> MeanStd:
    return MeanStd(float(values.mean()) if len(values) else math.nan,
                   float(values.std()) if len(values) > 1 else math.nan)


def summary_table(df: pd.DataFrame) -> Table:
    students, teachers = split(df)
    methods, levels = methods_of(students), sorted(students.earliness.unique())
    columns, rows, bold = ["method"], [[m] for m in methods], set()
    teacher_row, notes = [f"{TEACHER} (full series)"], []
    t_scores = teacher_scores(teachers)
    for e in levels:
        means = per_dataset_means(students, e)
        columns += [f"AUC-PRC e={e:g}", f"rank e={e:g}", f"wins e={e:g}"]
        ranks = rankdata(-means.to_numpy(), axis=1) if len(means) else np.zeros((0, len(methods)))
        wins = (ranks == ranks.min(axis=1, keepdims=True)).sum(0) if len(means) else np.zeros(len(methods))
        avg, avg_rank = means.mean().to_numpy(), ranks.mean(0) if len(means) else np.full(len(methods), np.nan)
        for i in range(len(methods)):
            rows[i] += [float(avg[i]), float(avg_rank[i]), int(wins[i])]
        if len(means):
            c = len(columns) - 3
            bold |= _best(avg, c) | _best(-avg_rank, c + 1) | _best(wins, c + 2)
        scores = t_scores.reindex(means.index)
        teacher_row += [float(scores.mean()) if scores.notna().any() else math.nan, None, None]
        missing = [str(d) for d in scores.index[scores.isna()]]
        notes.append(f"e={e:g}: {len(means)} dataset(s)" + (f", no teacher row for {', '.join(missing)}" if missing else ""))
    note = ("Average test AUC-PRC over datasets (each the mean over seeds), average rank (1 = best, ties averaged) "
            "and datasets won (ties count for each tied method), over datasets where every method has a result ("
            + "; ".join(notes) + "). The teacher sees full series; its row averages the same datasets as the students' "
            "at that earliness.")
    return Table("summary", "AUC-PRC per earliness: average, average rank, datasets won", columns,
                 rows + [teacher_row], note, bold)


def per_dataset_table(df: pd.DataFrame, metric: str = "auc_prc") -> Table:
    students, teachers = split(df)
    methods, t_scores = methods_of(students), teacher_scores(teachers, metric)
    rows, bold = [], set()
    for (dataset, e), group in students.groupby(["dataset", "earliness"], sort=True):
        cells = [_mean_std(group[group.method == m][metric]) for m in methods]
        means = [c.mean for c in cells]
        bold |= {(len(rows), 3 + i) for i, _ in _best(means, 0)}
        rows.append([dataset, f"{e:g}", t_scores.get(dataset, math.nan)] + cells)
    label = {"auc_prc": "AUC-PRC", "average_precision": "average precision (scikit-learn)"}.get(metric, metric)
    return Table(f"per_dataset_{metric}", f"Test {label} per dataset: mean ± std over seeds",
                 ["dataset", "earliness", f"{TEACHER} (full)"] + methods, rows)


def fidelity_table(df: pd.DataFrame) -> Table:
    students, teachers = split(df)
    methods, t_scores = methods_of(students), teacher_scores(teachers)
    columns = ["dataset", "earliness", f"{TEACHER} AUC-PRC"] + [f"{m} {k}" for m in methods for k in ("top-1", "KL")]
    rows = []
    for e in sorted(students.earliness.unique()):
        at = students[students.earliness == e]
        for dataset, group in at.groupby("dataset", sort=True):
            rows.append([dataset, f"{e:g}", t_scores.get(dataset, math.nan)] + [
                _mean_std(group[group.method == m][k]) for m in methods for k in ("fidelity_top1", "fidelity_kl")])
        means = {k: per_dataset_means(students, e, k) for k in ("fidelity_top1", "fidelity_kl")}
        rows.append(["average", f"{e:g}", float(t_scores.reindex(means["fidelity_top1"].index).mean())] + [
            float(means[k][m].mean()) for m in methods for k in ("fidelity_top1", "fidelity_kl")])
    return Table("fidelity", "Fidelity to the teacher: top-1 agreement and KL(teacher || student), mean ± std",
                 columns, rows)


def teacher_table(df: pd.DataFrame) -> Table:
    teachers = split(df)[1].sort_values("dataset")
    metrics = ["auc_prc", "average_precision", "accuracy", "roc_auc", "nll", "ece"]
    rows = [[r.dataset, r.prefix_mode, r.teacher_arch] + [float(getattr(r, m)) for m in metrics]
            + [_int(r.epochs), _int(r.best_epoch), float(r.seconds_per_epoch)]
            for r in teachers.itertuples()]
    return Table("teacher", "Teachers on full series (test split)",
                 ["dataset", "prefix mode", "arch"] + metrics + ["epochs", "best epoch", "s/epoch"], rows)


def timing_table(df: pd.DataFrame) -> Table:
    students, teachers = split(df)
    rows = []
    for m, group in [(TEACHER, teachers)] + [(m, students[students.method == m]) for m in methods_of(students)]:
        if len(group):
            rows.append([m, len(group), _mean_std(group.seconds_per_epoch), float(group.train_seconds.mean()),
                         float(group.epochs.mean()), float(group.peak_memory_mb.max())])
    return Table("timing", "Cost per method", ["method", "runs", "s/epoch", "train s (mean)", "epochs (mean)",
                                               "peak MB (max)"], rows)


def all_tables(df: pd.DataFrame) -> list[Table]:
    tables = [teacher_table(df), timing_table(df)]
    if len(split(df)[0]):
        tables = [summary_table(df), per_dataset_table(df), per_dataset_table(df, "average_precision"),
                  fidelity_table(df)] + tables
    return tables
