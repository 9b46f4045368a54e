"""PNG plots: AUC-PRC vs earliness with bands over seeds, critical-difference diagrams, cost per method."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from .tables import TEACHER, methods_of, per_dataset_means, split

MAX_PANELS = 12


def earliness_plot(df: pd.DataFrame, path: Path) -> Path:
    """Mean test AUC-PRC per method and earliness, band = ± std over seeds; the teacher as a dashed line."""
    students, teachers = split(df)
    methods, datasets = methods_of(students), sorted(students.dataset.unique())
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    panels = [("average over datasets", students, teachers[teachers.dataset.isin(datasets)])]
    if 1 < len(datasets) < MAX_PANELS:
        panels += [(d, students[students.dataset == d], teachers[teachers.dataset == d]) for d in datasets]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (title, s, t) in zip(axes, panels):
        per_seed = s.groupby(["method", "earliness", "seed"]).auc_prc.mean()  # over datasets, per seed
        stats = per_seed.groupby(["method", "earliness"]).agg(["mean", "std"])
        for m in methods:
            if m in stats.index.get_level_values(0):
                st = stats.loc[m]
                x, mean, std = st.index.to_numpy(), st["mean"].to_numpy(), st["std"].fillna(0).to_numpy()
                ax.plot(x, mean, marker="o", color=colors[m], label=m)
                ax.fill_between(x, mean - std, mean + std, color=colors[m], alpha=0.2, linewidth=0)
        if len(t):
            ax.axhline(t.auc_prc.mean(), ls="--", color="k", lw=1, label=f"{TEACHER} (full series)")
        ax.set(title=title, xlabel="earliness", ylabel="test AUC-PRC")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def cd_plots(df: pd.DataFrame, folder: Path, min_datasets: int = 5) -> list[Path]:
    """One critical-difference diagram (aeon: Friedman, Wilcoxon-Holm cliques) per earliness with
    at least `min_datasets` datasets on which every method has a result, when there are 3 methods or more
    (Friedman's test compares at least three)."""
    import matplotlib.pyplot as plt
    from aeon.visualisation import plot_critical_difference
    students = split(df)[0]
    written = []
    for e in sorted(students.earliness.unique()):
        means = per_dataset_means(students, e)
        if len(means) < min_datasets or means.shape[1] < 3:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig, _ = plot_critical_difference(means.to_numpy(), list(means.columns))
        fig.suptitle(f"AUC-PRC ranks, earliness {e:g} ({len(means)} datasets)", fontsize=9)
        path = folder / f"critical_difference_e{e:g}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def timing_plot(df: pd.DataFrame, path: Path) -> Path:
    """Seconds per epoch per method (mean ± std over runs), the teacher first."""
    students, teachers = split(df)
    methods = methods_of(students)
    groups = [(TEACHER, teachers)] + [(m, students[students.method == m]) for m in methods]
    groups = [(m, g.seconds_per_epoch) for m, g in groups if len(g)]
    fig = Figure(figsize=(1.2 * len(groups) + 2, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.bar([m for m, _ in groups], [s.mean() for _, s in groups],
           yerr=[s.std() if len(s) > 1 else 0 for _, s in groups],
           color=["0.5" if m == TEACHER else f"C{methods.index(m) % 10}" for m, _ in groups], capsize=3)
    ax.set(ylabel="seconds per epoch", title="training cost per epoch")
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


def all_plots(df: pd.DataFrame, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    plots = [timing_plot(df, folder / "seconds_per_epoch.png")]
    if len(split(df)[0]):
        plots = [earliness_plot(df, folder / "auc_prc_vs_earliness.png")] + cd_plots(df, folder) + plots
    return plots
