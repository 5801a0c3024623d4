"""The figures. Each function draws one PNG (matplotlib's Agg canvas, no display needed) and returns
the data it plotted as a DataFrame, so a caller can write it next to the figure and a test can
check it against the runs. Nothing to plot is a UserError, never an empty figure.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from trainables.errors import UserError


def _new_figure(width: float = 6.4, height: float = 4.2):
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def _save(fig: Figure, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)


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


def comparison_bars(table: pd.DataFrame, path: str, *, value: str, error: str, n: str = "n_seeds",
                    label: str = "method", ylabel: str = "dev score", title: str = "") -> pd.DataFrame:
    """One bar per method at ``value`` with an error bar of ``error`` (missing -> none), ``n=k``
    written above each bar."""
    data = _require(table, [value], title or "the comparison")
    plotted = pd.DataFrame({"method": data[label].astype(str).to_numpy(),
                            "value": data[value].astype(float).to_numpy(),
                            "error": data[error].astype(float).fillna(0.0).to_numpy(),
                            "n": data[n].astype(int).to_numpy()})
    fig, ax = _new_figure(max(4.0, 1.1 * len(plotted) + 2))
    x = np.arange(len(plotted))
    ax.bar(x, plotted["value"], yerr=plotted["error"], capsize=5, color="tab:blue", alpha=0.8)
    for xi, (v, e, k) in enumerate(zip(plotted["value"], plotted["error"], plotted["n"])):
        ax.annotate(f"n={k}", (xi, v + e), textcoords="offset points", xytext=(0, 3), ha="center",
                    fontsize=8)
    ax.set_xticks(x, plotted["method"], rotation=20 if len(plotted) > 4 else 0)
    low = float((plotted["value"] - plotted["error"]).min())
    high = float((plotted["value"] + plotted["error"]).max())
    span = max(high - low, 0.01)
    ax.set_ylim(max(0.0, low - span) if low >= 0 else low - 0.1 * span, high + 0.15 * span)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    return plotted


def sensitivity_lines(points: pd.DataFrame, path: str, *, x: str = "value", value: str = "score",
                      xlabel: str, ylabel: str, title: str = "", log_x: bool = False,
                      tick_labels: dict | None = None) -> pd.DataFrame:
    """One line per method of the mean of ``value`` over seeds against ``x``, with a band of
    ± one standard deviation (ddof=1) where a point has several seeds."""
    data = _require(points, [x, value], title or "the study")
    agg = aggregate_seeds(data, ["method", x], value)
    fig, ax = _new_figure()
    for method, g in agg.groupby("method", sort=True):
        g = g.sort_values(x)
        line, = ax.plot(g[x], g["mean"], marker="o", label=method)
        if (g["n"] > 1).any():
            ax.fill_between(g[x], g["mean"] - g["std"], g["mean"] + g["std"], alpha=0.2,
                            color=line.get_color(), linewidth=0)
    if log_x:
        ax.set_xscale("log")
    xs = sorted(agg[x].unique())
    ax.set_xticks(xs, [tick_labels.get(v, f"{v:g}") if tick_labels else f"{v:g}" for v in xs],
                  fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="method")
    _save(fig, path)
    return agg.rename(columns={x: "x"})


def step_curves(curves: pd.DataFrame, path: str, *, columns: dict[str, str], ylabel: str,
                title: str = "", panels: bool = False) -> pd.DataFrame:
    """Lines of ``columns`` (column -> legend label) against ``step``; each line uses the steps
    where its column was logged. ``panels``: one panel per column, each with its own y range (for
    quantities that move on different scales)."""
    present = [c for c in columns if c in curves.columns and curves[c].notna().any()]
    if not present:
        raise UserError(f"nothing to plot for {title or 'the curves'}: no recorded values of "
                        f"{', '.join(columns)}")
    data = curves[["step", *present]].dropna(how="all", subset=present).sort_values("step")
    if panels and len(present) > 1:
        fig = Figure(figsize=(6.4, 2.4 * len(present)), layout="constrained")
        axes = list(fig.subplots(len(present), 1, sharex=True))
    else:
        fig, ax = _new_figure()
        axes = [ax] * len(present)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for i, (col, ax) in enumerate(zip(present, axes)):
        d = data[["step", col]].dropna()
        ax.plot(d["step"], d[col], marker="o" if len(d) < 30 else None, markersize=3,
                label=columns[col], color=colours[i % len(colours)])
        ax.grid(alpha=0.3)
        ax.legend()
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_ylabel(columns[col] if panels and len(present) > 1 else ylabel)
    axes[-1].set_xlabel("training step")
    axes[0].set_title(title)
    _save(fig, path)
    return data.reset_index(drop=True)
