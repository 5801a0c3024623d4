"""The figures of :mod:`analysis.importance`: importances as bars, and the score against each
searched hyperparameter (slice plots), in the project's figure style (:mod:`analysis.figure_style`:
PNG and PDF, titles that fit, the score-axis rule); the functions return the paths they wrote."""

from __future__ import annotations

import math
import os

from analysis.figure_style import save_figure, set_score_axis


def importance_figure(result: dict, out_dir: str) -> list[str]:
    """Horizontal bars, most important on top."""
    from matplotlib.figure import Figure

    items = list(result["importances"].items())[::-1]
    fig = Figure(figsize=(6.0, 0.5 * len(items) + 1.4), layout="constrained")
    ax = fig.subplots()
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"importance ({result['evaluator']}, normalised)")
    ax.set_title(f"{result['method']}: what mattered ({result['trials']} trials)")
    return save_figure(fig, os.path.join(out_dir, f"importance_{result['method']}"))


def slices_figure(result: dict, out_dir: str) -> list[str]:
    """One panel per searched hyperparameter: every trial's score against its value; the top
    quarter (the recommendation's trials) in orange."""
    from matplotlib.figure import Figure
    from optuna.distributions import CategoricalDistribution

    study = result["study"]
    names = list(result["importances"])
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.0 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    top = set(result["top_trials"])
    for ax, name in zip(axes, names):
        dist = study.trials[0].distributions[name]
        categorical = isinstance(dist, CategoricalDistribution)
        labels = [str(c) for c in dist.choices] if categorical else None
        for group, colour, marker in ((False, "tab:blue", "o"), (True, "tab:orange", "D")):
            trials = [t for t in study.trials if (t.number in top) == group]
            xs = [labels.index(str(t.params[name])) if categorical else t.params[name] for t in trials]
            ax.scatter(xs, [t.value for t in trials], c=colour, marker=marker, s=28,
                       label="top quarter" if group else "other trials", zorder=3)
        if categorical:
            ax.set_xticks(range(len(labels)), labels)
        elif getattr(dist, "log", False):
            ax.set_xscale("log")
        ax.set_xlabel(f"{name} (importance {result['importances'][name]:.2f})")
        set_score_axis(ax, [t.value for t in study.trials], result["score"])
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{result['method']}: {result['score']} against each hyperparameter")
    return save_figure(fig, os.path.join(out_dir, f"slices_{result['method']}"))
