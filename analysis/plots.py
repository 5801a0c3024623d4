"""The figures. Each ``*_figure`` function draws one figure (matplotlib's Agg canvas, no display
needed) and returns it with the data it plotted; the function without the suffix also writes it
as PNG and PDF (:func:`analysis.figure_style.save_figure`) and returns the data, so a caller can
write it next to the figure and a test can check it against the runs. Nothing to plot is a
UserError, never an empty figure. The look (score axis range, teacher line, markers, dodging,
error bars only for several seeds) is :mod:`analysis.figure_style`'s.

``teachers``: the fine-tuned teacher's score(s) on the plotted metric, drawn as reference lines
(:class:`analysis.teacher_ref.TeacherScore` or ``(label, value)`` pairs; None or empty: no line).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import figure_style as fs
from trainables.errors import UserError


def _require(data: pd.DataFrame, columns: list[str], what: str) -> pd.DataFrame:
    data = data.dropna(subset=columns)
    if data.empty:
        raise UserError(f"nothing to plot for {what}: no recorded values of {', '.join(columns)}")
    return data


def aggregate_seeds(points: pd.DataFrame, by: list[str], value: str = "score") -> pd.DataFrame:
    """Mean, sample standard deviation (ddof=1; 0 for a single seed) and count of ``value``."""
    g = points.groupby(by, sort=True)[value]
    out = g.agg(mean="mean", std=lambda s: float(np.std(s, ddof=1)) if len(s) > 1 else 0.0, n="count")
    return out.reset_index()


# ---- method comparison: one bar per method ------------------------------------------------------

def comparison_figure(table: pd.DataFrame, *, value: str, error: str, n: str = "n_seeds",
                      label: str = "method", ylabel: str = "dev score", title: str = "",
                      teachers=None):
    """One bar per method at ``value``; an error bar of ``error`` where the method has two or more
    seeds; ``(n=k)`` under each method's name; the teacher's reference line(s)."""
    data = _require(table, [value], title or "the comparison")
    plotted = pd.DataFrame({"method": data[label].astype(str).to_numpy(),
                            "value": data[value].astype(float).to_numpy(),
                            "error": data[error].astype(float).fillna(0.0).to_numpy(),
                            "n": data[n].astype(int).to_numpy()})
    fig, ax = fs.new_figure(max(4.5, 1.1 * len(plotted) + 2.5))
    x = np.arange(len(plotted))
    ax.bar(x, plotted["value"], color=fs.COLOURS[0], alpha=0.8, zorder=2)
    fs.error_bars(ax, x, plotted["value"], plotted["error"], plotted["n"], color="black")
    several = (plotted["n"] >= 2).to_numpy()
    fs.teacher_lines(ax, teachers)
    ax.set_xticks(x, [f"{m}\n(n={k})" for m, k in zip(plotted["method"], plotted["n"])],
                  rotation=20 if len(plotted) > 4 else 0)
    tops = np.where(several, plotted["value"] + plotted["error"], plotted["value"])
    lows = np.where(several, plotted["value"] - plotted["error"], plotted["value"])
    fs.set_score_axis(ax, [*tops, *lows, *fs.teacher_values(teachers)], ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fs.outside_legend(ax)
    return fig, plotted


def comparison_bars(table: pd.DataFrame, path: str, **kw) -> pd.DataFrame:
    """:func:`comparison_figure` written to ``path`` (PNG) and beside it (PDF)."""
    fig, plotted = comparison_figure(table, **kw)
    fs.save_figure(fig, path)
    return plotted


# ---- sensitivity: one line per method against a hyperparameter ----------------------------------

def sensitivity_figure(points: pd.DataFrame, *, x: str = "value", value: str = "score",
                       xlabel: str, ylabel: str, title: str = "", log_x: bool = False,
                       tick_labels: dict | None = None, teachers=None):
    """One line per method of the mean of ``value`` over seeds against ``x`` (methods dodged
    sideways, each with its own marker and line style), ± one standard deviation (ddof=1) as
    error bars where a point has several seeds; the teacher's reference line(s)."""
    data = _require(points, [x, value], title or "the study")
    agg = aggregate_seeds(data, ["method", x], value)
    fig, ax = fs.new_figure(7.4)
    if log_x:
        ax.set_xscale("log")
    methods = list(dict.fromkeys(agg.sort_values("method")["method"]))
    for i, method in enumerate(methods):
        g = agg[agg["method"] == method].sort_values(x)
        line, shifted = fs.plot_series(ax, g[x], g["mean"], i, len(methods), label=method)
        fs.error_bars(ax, g[x], g["mean"], g["std"], g["n"], transform=shifted, color=line.get_color())
    fs.teacher_lines(ax, teachers)
    xs = sorted(agg[x].unique())
    ax.set_xticks(xs, [tick_labels.get(v, f"{v:g}") if tick_labels else f"{v:g}" for v in xs],
                  fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    fs.set_score_axis(ax, [*(agg["mean"] - agg["std"]), *(agg["mean"] + agg["std"]),
                           *fs.teacher_values(teachers)], ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fs.outside_legend(ax, title="method")
    return fig, agg.rename(columns={x: "x"})


def sensitivity_lines(points: pd.DataFrame, path: str, **kw) -> pd.DataFrame:
    """:func:`sensitivity_figure` written to ``path`` (PNG) and beside it (PDF)."""
    fig, plotted = sensitivity_figure(points, **kw)
    fs.save_figure(fig, path)
    return plotted


# ---- curves against the training step -----------------------------------------------------------

def step_figure(curves: pd.DataFrame, *, columns: dict[str, str], ylabel: str, title: str = "",
                panels: bool = False, score: bool = False, teachers=None):
    """Lines of ``columns`` (column -> legend label) against ``step``; each line uses the steps
    where its column was logged, with its own marker and line style, dodged sideways when the
    lines share an axis. ``panels``: one panel per column, each with its own y range (for
    quantities that move on different scales). ``score``: the y axis is a score axis (figure
    style's rule) with the teacher's reference line(s)."""
    present = [c for c in columns if c in curves.columns and curves[c].notna().any()]
    if not present:
        raise UserError(f"nothing to plot for {title or 'the curves'}: no recorded values of "
                        f"{', '.join(columns)}")
    data = curves[["step", *present]].dropna(how="all", subset=present).sort_values("step")
    split = panels and len(present) > 1
    fig, axes = fs.new_figure(6.4, 2.4 * len(present), rows=len(present), sharex=True) if split \
        else fs.new_figure(7.2)
    axes = axes if split else [axes] * len(present)
    for i, (col, ax) in enumerate(zip(present, axes)):
        d = data[["step", col]].dropna()
        fs.plot_series(ax, d["step"], d[col], i, len(present), label=columns[col], dodged=not split,
                       markersize=4, markevery=max(1, len(d) // 20))
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_ylabel(columns[col] if split else ylabel)
    if score and not split:
        fs.teacher_lines(axes[0], teachers)
        fs.set_score_axis(axes[0], [*data[present].stack(), *fs.teacher_values(teachers)], ylabel)
    for ax in dict.fromkeys(axes):
        fs.outside_legend(ax)
    axes[-1].set_xlabel("training step")
    axes[0].set_title(title)
    return fig, data.reset_index(drop=True)


def step_curves(curves: pd.DataFrame, path: str, **kw) -> pd.DataFrame:
    """:func:`step_figure` written to ``path`` (PNG) and beside it (PDF)."""
    fig, plotted = step_figure(curves, **kw)
    fs.save_figure(fig, path)
    return plotted


# ---- the papers' table: grouped bars per task ---------------------------------------------------

def grouped_figure(table: pd.DataFrame, *, teacher: str = "teacher", title: str = ""):
    """One panel per task of ``table`` (:func:`analysis.paper_table.paper_table`'s rows): a group
    per ``<split>_<metric>``, a bar per method at its mean with a ±1 std error bar where it has two
    or more seeds, the teacher's mean as a dashed line over the group, labelled with its value.
    Returns the figure and the plotted bars (task, group, method, mean, std, n)."""
    tasks = list(dict.fromkeys(table["task"]))
    groups = sum(1 for c in table.columns if c.endswith("_mean"))
    fig, axes = fs.new_figure(max(5.5, 3.2 + 1.6 * max(1, groups)), 3.6 * len(tasks), rows=len(tasks))
    axes = axes if isinstance(axes, list) else [axes]
    plotted = []
    for ax, task in zip(axes, tasks):
        t = table[table["task"] == task]
        keys = [c[:-len("_mean")] for c in t.columns if c.endswith("_mean") and t[c].notna().any()]
        students = t[t["method"] != teacher]
        ref = t[t["method"] == teacher]
        width = 0.8 / max(1, len(students))
        values = []
        for i, (_, r) in enumerate(students.iterrows()):
            xs, means, errs, ns = [], [], [], []
            for g, key in enumerate(keys):
                mean = r[f"{key}_mean"]
                if pd.isna(mean):
                    continue
                n = int(r[f"{key}_n"])
                err = 0.0 if pd.isna(r[f"{key}_std"]) or n < 2 else float(r[f"{key}_std"])
                xs.append(g - 0.4 + width * (i + 0.5))
                means.append(float(mean))
                errs.append(err)
                ns.append(n)
                values += [mean - err, mean + err]
                plotted.append({"task": task, "group": key, "method": r["method"], "mean": float(mean),
                                "std": err, "n": n})
            style = fs.series_style(i)
            ax.bar(xs, means, width=width * 0.95, color=style["color"], alpha=0.85, zorder=2,
                   label=f"{r['method']} (n={int(r['n'])})")
            fs.error_bars(ax, xs, means, errs, ns, color="black")
        for g, key in enumerate(keys):
            if ref.empty or pd.isna(ref.iloc[0].get(f"{key}_mean", np.nan)):
                continue
            value = float(ref.iloc[0][f"{key}_mean"])
            ax.hlines(value, g - 0.45, g + 0.45, label=teacher if g == 0 else None,
                      colors=fs.TEACHER_STYLE["color"], linestyles=fs.TEACHER_STYLE["linestyle"],
                      linewidth=fs.TEACHER_STYLE["linewidth"], zorder=3)
            ax.annotate(f"{value:.4g}", (g + 0.45, value), textcoords="offset points", xytext=(0, 2),
                        ha="right", va="bottom", fontsize=7)
            values.append(value)
            plotted.append({"task": task, "group": key, "method": teacher, "mean": value,
                            "std": float("nan"), "n": int(ref.iloc[0]["n"])})
        ax.set_xticks(range(len(keys)), [k.replace("_", " ", 1) for k in keys])
        fs.set_score_axis(ax, values, "score")
        ax.set_title(f"{task}" + (f": {title}" if title else ""))
        ax.grid(axis="y", alpha=0.3)
        fs.outside_legend(ax)
    return fig, pd.DataFrame(plotted)
