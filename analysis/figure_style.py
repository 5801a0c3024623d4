"""How every figure of the project looks and how it is written (see docs/analysis.md, "Figures").

* Formats: every figure is written as PNG (for a quick look) and PDF (vector, for a paper), side by
  side (:data:`FORMATS`, :func:`save_figure`).
* Titles: the figures use constrained layout, and a title wider than the figure is wrapped onto
  more lines until it lies inside the figure (:func:`fit_titles`).
* Score axes (:func:`score_limits`): start at 0 (when a value is negative, as MCC or a correlation
  can be, 5 % of the span below the lowest value) and end at 1 when every value is at most 1 (else
  at the highest value), plus a fixed 8 % headroom for labels. The teacher's reference line counts
  as a value, so it is always in view. No axis starts at a value chosen to magnify differences.
* The fine-tuned teacher's score is a dashed black horizontal line, labelled with its value in the
  legend (:func:`teacher_lines`). Legends sit right of the axes, over no data.
* Series (methods, curves) differ in colour, marker (hollow for every other series) and line
  style, and the points of the i-th of k series are shifted horizontally by
  ``(i - (k - 1) / 2) * 6`` points (:func:`dodge`), so lines that coincide stay visible.
* Spread: error bars (±1 sample std, ddof=1) only at points with two or more seeds
  (:func:`error_bars`); one seed shows the value alone.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # matplotlib loads where a figure is drawn (the CLIs' --help stays fast)
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.transforms import Transform

FORMATS = ("png", "pdf")
DPI = 150
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
           "tab:olive", "tab:cyan", "tab:gray")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
#: solid, dash-dot, dotted, dash-dot-dot: plain dashes are the teacher's reference line alone
LINESTYLES = ("-", "-.", ":", (0, (3, 1, 1, 1, 1, 1)))
#: headroom above the highest tick of a score axis, as a fraction of its span
HEADROOM = 0.08
#: room below the lowest value when a score is negative
NEGATIVE_MARGIN = 0.05
#: horizontal distance between neighbouring series' points, in typographic points
DODGE_POINTS = 6.0
TEACHER_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.2}


def new_figure(width: float = 6.4, height: float = 4.2, rows: int = 1, sharex: bool = False):
    """A constrained-layout figure with an Agg canvas and ``rows`` axes (one Axes, or a list)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    if rows == 1:
        return fig, fig.subplots()
    return fig, list(fig.subplots(rows, 1, sharex=sharex))


def series_style(i: int) -> dict:
    """Colour, marker and line style of the i-th series (all three differ between neighbours)."""
    return {"color": COLOURS[i % len(COLOURS)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": LINESTYLES[i % len(LINESTYLES)]}


def dodge(ax: Axes, i: int, k: int) -> Transform:
    """Data coordinates shifted right by the i-th of k series' offset (in points: the same on a
    linear and a log axis)."""
    shift = (i - (k - 1) / 2) * DODGE_POINTS
    from matplotlib.transforms import offset_copy

    return offset_copy(ax.transData, fig=ax.figure, x=shift, y=0.0, units="points")


def plot_series(ax: Axes, x, y, i: int, k: int, *, label: str, dodged: bool = True, **kw):
    """The i-th of k series as a line with its own colour, marker (hollow for odd i) and line
    style, shifted by :func:`dodge` when ``dodged``; returns the line and its transform."""
    style = {**series_style(i), "markersize": 6, **kw}
    if i % 2:
        style.setdefault("markerfacecolor", "white")
    transform = dodge(ax, i, k) if dodged else ax.transData
    line, = ax.plot(x, y, label=label, transform=transform, **style)
    # a shifted transform hides the points from autoscaling: add them in data coordinates
    ax.update_datalim(np.column_stack([np.asarray(x, dtype=float), np.asarray(y, dtype=float)]))
    ax.autoscale_view()
    return line, transform


def score_limits(values: Iterable[float]) -> tuple[float, float]:
    """The y range of a score axis holding ``values`` (the rule in the module docstring)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return 0.0, 1.0 + HEADROOM
    low, high = float(v.min()), float(v.max())
    ceiling = 1.0 if high <= 1.0 else high
    bottom = 0.0 if low >= 0 else low - NEGATIVE_MARGIN * (ceiling - low)
    return bottom, ceiling + HEADROOM * (ceiling - bottom)


def set_score_axis(ax: Axes, values: Iterable[float], label: str) -> None:
    ax.set_ylim(*score_limits(values))
    ax.set_ylabel(label)


def teacher_lines(ax: Axes, teachers: Sequence | None) -> list:
    """A dashed horizontal line per teacher reference (objects with ``value`` and ``label``, or
    ``(label, value)`` pairs), labelled ``<label>: <value>`` in the legend."""
    drawn = []
    for ref in teachers or ():
        label, value = (ref.label, ref.value) if hasattr(ref, "value") else ref
        drawn.append(ax.axhline(value, label=f"{label}: {value:.4g}", zorder=1.5, **TEACHER_STYLE))
    return drawn


def teacher_values(teachers: Sequence | None) -> list[float]:
    return [ref.value if hasattr(ref, "value") else ref[1] for ref in teachers or ()]


def error_bars(ax: Axes, x, y, err, n, *, transform: Transform | None = None, color=None) -> None:
    """±``err`` bars at the points with ``n >= 2``; nothing where every ``n`` is 1."""
    x, y, err, n = (np.asarray(a, dtype=float) for a in (x, y, err, n))
    keep = (n >= 2) & np.isfinite(err)
    if not keep.any():
        return
    kw = {"transform": transform} if transform is not None else {}
    ax.errorbar(x[keep], y[keep], yerr=err[keep], fmt="none", ecolor=color, capsize=4, elinewidth=1,
                **kw)


def outside_legend(ax: Axes, **kw) -> None:
    """The legend right of the axes, where it covers no data."""
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0, **kw)


def _inside(fig: Figure, text) -> bool:
    box = text.get_window_extent(fig.canvas.get_renderer())
    width, height = fig.bbox.width, fig.bbox.height
    return box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height


def fit_titles(fig: Figure) -> None:
    """Wrap each axes title (and the suptitle) until it lies inside the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    texts = [ax.title for ax in fig.axes if ax.get_title()]
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and suptitle.get_text():
        texts.append(suptitle)
    for text in texts:
        original = text.get_text().replace("\n", " ")
        chars = len(original)
        while not _inside(fig, text) and chars > 12:
            chars = int(chars * 0.8)
            text.set_text(textwrap.fill(original, chars))
            fig.canvas.draw()


def figure_paths(path: str) -> list[str]:
    """The files a figure at ``path`` (any extension, or none) is written to, one per format."""
    stem, ext = os.path.splitext(path)
    stem = stem if ext.lstrip(".").lower() in FORMATS else path
    return [f"{stem}.{fmt}" for fmt in FORMATS]


def save_figure(fig: Figure, path: str) -> list[str]:
    """Fit the titles and write the figure in every format; returns the paths written."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fit_titles(fig)
    paths = figure_paths(path)
    for p in paths:
        fig.savefig(p, dpi=DPI)
    return paths
