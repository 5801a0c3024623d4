"""The papers' comparison table (MetaDistil Table 1) from per-seed results: pure pandas/scipy, no
store, no Ray, so it can be re-made from a saved CSV.

    python -m analysis.paper_table --from reproduce.csv [--out DIR] [--baseline kd]

Input: a *tidy* DataFrame (:data:`TIDY_COLUMNS`), one row per (task, method, seed, metric, split)
with its ``value``: ``split`` is ``dev`` (the best dev evaluation's ``eval_<metric>``), ``test``
(``test_<metric>``, only for tasks with a labelled test split) or ``cost`` (``params``: the
row's model (student or teacher), ``speedup``); ``method`` ``teacher`` holds the fine-tuned teacher's scores (one row set per
distinct teacher, ``seed`` = the seed it was fine-tuned for, or empty).

The table (:func:`paper_table`): per task, the teacher row first, then one row per method (in
the order they first appear); for each split and metric the mean and the sample standard
deviation (ddof=1; none for a single seed) over seeds, the number of seeds ``n``, and
**Δ vs KD**: the mean over seeds of the paired difference ``method − kd`` (pairs = the same seed
value in both rows) with the two-sided paired t-test's p-value (``scipy.stats.ttest_rel``);
n/a when the baseline was not run, fewer than two pairs exist (p), or the differences have no
variance (p).

Outputs (:func:`write_outputs`): ``<prefix>.md`` (the table ×100, with its caption),
``<prefix>.csv`` (the tidy input), ``<prefix>_table.csv`` (the aggregated table, raw numbers) and
``<prefix>.png`` / ``.pdf`` (grouped bars: mean ± std over seeds per method, the teacher as a
dashed line; the y axis starts at 0, or below 0 only when a value is negative, e.g. MCC).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd

from trainables.errors import UserError, exit_on_user_error

TIDY_COLUMNS = ["task", "method", "seed", "metric", "split", "value"]
TEACHER = "teacher"
BASELINE = "kd"
SCORE_SPLITS = ("dev", "test")
COST_SPLIT = "cost"
COST_METRICS = ("params", "speedup")
TEST_NAME = "scipy.stats.ttest_rel"


# ---- the numbers ----------------------------------------------------------------------------------

def check_results(results: pd.DataFrame) -> pd.DataFrame:
    """The tidy frame with its columns typed (``seed`` nullable integer, ``value`` float)."""
    missing = [c for c in TIDY_COLUMNS if c not in results.columns]
    if missing:
        raise UserError(f"per-seed results lack column(s) {', '.join(missing)}; expected {', '.join(TIDY_COLUMNS)}")
    df = results[TIDY_COLUMNS].copy()
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    for col in ("task", "method", "metric", "split"):
        df[col] = df[col].astype(str)
    df = df.dropna(subset=["value"])
    if df[df["split"].isin(SCORE_SPLITS)].empty:
        raise UserError("no dev or test score among the per-seed results: nothing to tabulate")
    return df


def _ordered(values: pd.Series) -> list[str]:
    return list(dict.fromkeys(values))


def score_columns(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(split, metric) pairs with scores, dev before test, metrics in order of first appearance."""
    scores = df[df["split"].isin(SCORE_SPLITS)]
    metrics = _ordered(scores["metric"])
    return [(s, m) for s in SCORE_SPLITS for m in metrics
            if not scores[(scores["split"] == s) & (scores["metric"] == m)].empty]


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) >= 2 else float("nan")


def paired_delta(method_values: pd.Series, baseline_values: pd.Series) -> dict[str, float]:
    """Mean paired difference (method − baseline) over the seeds both have, the paired two-sided
    t-test p-value (NaN with fewer than 2 pairs or zero-variance differences) and the pair count.
    Both series are indexed by seed."""
    a = method_values.dropna()
    b = baseline_values.dropna()
    a = a[a.index.notna()]
    b = b[b.index.notna()]
    common = sorted(set(a.index) & set(b.index))
    if not common:
        return {"delta": float("nan"), "p": float("nan"), "pairs": 0}
    x = a.loc[common].to_numpy(dtype=float)
    y = b.loc[common].to_numpy(dtype=float)
    p = float("nan")
    diff = x - y
    if len(common) >= 2 and np.ptp(diff) > 0:
        from scipy.stats import ttest_rel

        p = float(ttest_rel(x, y).pvalue)
    return {"delta": float(diff.mean()), "p": p, "pairs": len(common)}


def _by_seed(rows: pd.DataFrame) -> pd.Series:
    """Values indexed by seed (the mean where a seed appears twice, e.g. several teachers)."""
    return rows.groupby("seed", dropna=False)["value"].mean()


def paper_table(results: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """One row per (task, method): ``task``, ``method``, ``n`` (seeds with a dev or test score),
    for every (split, metric) with scores ``<split>_<metric>_mean`` / ``_std`` (ddof=1; NaN for
    n = 1) / ``_n`` and, for methods other than the baseline and the teacher,
    ``<split>_<metric>_delta`` / ``_p`` / ``_pairs`` against ``baseline`` (see
    :func:`paired_delta`); the cost columns ``params`` and ``speedup`` (means) where
    present. Columns of a split no row has (no ``test`` rows: no ``test_*`` columns) are absent."""
    df = check_results(results)
    columns = score_columns(df)
    rows = []
    for task in _ordered(df["task"]):
        tdf = df[df["task"] == task]
        methods = _ordered(tdf["method"])
        methods = ([TEACHER] if TEACHER in methods else []) + [m for m in methods if m != TEACHER]
        base = tdf[tdf["method"] == baseline]
        for method in methods:
            mdf = tdf[tdf["method"] == method]
            scored = mdf[mdf["split"].isin(SCORE_SPLITS)]
            if scored.empty:
                continue
            seeds = scored["seed"]
            n = int(seeds.nunique()) if seeds.notna().all() else int(scored.groupby(["split", "metric"]).size().max())
            row: dict = {"task": task, "method": method, "n": n}
            for split, metric in columns:
                cell = mdf[(mdf["split"] == split) & (mdf["metric"] == metric)]
                if cell.empty:
                    continue
                values = _by_seed(cell) if cell["seed"].notna().all() else cell["value"]
                values = values.to_numpy(dtype=float)
                key = f"{split}_{metric}"
                row[f"{key}_mean"] = float(values.mean())
                row[f"{key}_std"] = _std(values)
                row[f"{key}_n"] = len(values)
                if method not in (TEACHER, baseline):
                    bcell = base[(base["split"] == split) & (base["metric"] == metric)]
                    stats = paired_delta(_by_seed(cell), _by_seed(bcell)) if not bcell.empty else \
                        {"delta": float("nan"), "p": float("nan"), "pairs": 0}
                    row.update({f"{key}_delta": stats["delta"], f"{key}_p": stats["p"],
                                f"{key}_pairs": stats["pairs"]})
            for metric in COST_METRICS:
                cost = mdf[(mdf["split"] == COST_SPLIT) & (mdf["metric"] == metric)]
                if not cost.empty:
                    row[metric] = float(cost["value"].mean())
            rows.append(row)
    table = pd.DataFrame(rows)
    order = ["task", "method", "n"]
    for split, metric in columns:
        order += [f"{split}_{metric}_{k}" for k in ("mean", "std", "n", "delta", "p", "pairs")]
    order += list(COST_METRICS)
    return table[[c for c in order if c in table.columns]]


# ---- formatting -----------------------------------------------------------------------------------

def format_score(mean: float, std: float, n: int) -> str:
    """``87.00 ± 1.00`` (×100), just the mean for n = 1, ``–`` when missing."""
    if mean is None or pd.isna(mean):
        return "–"
    if n >= 2 and not pd.isna(std):
        return f"{100 * mean:.2f} ± {100 * std:.2f}"
    return f"{100 * mean:.2f}"


def format_p(p: float) -> str:
    if p is None or pd.isna(p):
        return "n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def format_delta(delta: float, p: float, pairs: int) -> str:
    """``+1.23 (p=0.041)`` (×100); ``n/a`` without pairs."""
    if delta is None or pd.isna(delta) or not pairs:
        return "n/a"
    return f"{100 * delta:+.2f} ({format_p(p) if pairs >= 2 else 'p n/a'})"


def _count(n: float) -> str:
    if pd.isna(n):
        return "–"
    for unit, size in (("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def task_markdown(table: pd.DataFrame, task: str, baseline: str = BASELINE) -> str:
    """The GitHub-markdown table of one task."""
    t = table[table["task"] == task]
    keys = [c[:-len("_mean")] for c in t.columns if c.endswith("_mean") and t[c].notna().any()]
    primaries = {}
    for key in keys:  # Δ for each split's first (primary) metric
        split = key.split("_", 1)[0]
        primaries.setdefault(split, key)
    has_cost = {c: c in t.columns and t[c].notna().any() for c in COST_METRICS}
    header = ["Method", "n"]
    header += ["#Params"] if has_cost["params"] else []
    header += ["Speed-up"] if has_cost["speedup"] else []
    header += [k.replace("_", " ", 1) for k in keys]
    header += [f"Δ vs {baseline.upper()} ({k.replace('_', ' ', 1)})" for k in primaries.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in t.iterrows():
        cells = [str(r["method"]), str(int(r["n"]))]
        if has_cost["params"]:
            cells.append(_count(r.get("params", np.nan)))
        if has_cost["speedup"]:
            s = r.get("speedup", np.nan)
            cells.append("1.00×" if r["method"] == TEACHER else ("–" if pd.isna(s) else f"{s:.2f}×"))
        cells += [format_score(r[f"{k}_mean"], r[f"{k}_std"], int(r[f"{k}_n"]) if not pd.isna(r[f"{k}_n"]) else 0)
                  for k in keys]
        for k in primaries.values():
            if r["method"] in (TEACHER, baseline):
                cells.append("—")
            else:
                pairs = r.get(f"{k}_pairs", 0)
                pairs = 0 if pd.isna(pairs) else int(pairs)
                cells.append(format_delta(r.get(f"{k}_delta", np.nan), r.get(f"{k}_p", np.nan), pairs))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def caption(baseline: str = BASELINE, extra: str = "") -> str:
    return (f"Scores ×100: mean ± sample standard deviation (ddof=1) over n seeds (one seed: the value "
            f"alone). `dev`: the best dev evaluation of each seed's run; `test`: the labelled test split, "
            f"where the task has one. The teacher row is the fine-tuned teacher (one per seed where the "
            f"seeds fine-tuned their own). Δ vs {baseline.upper()}: mean over seeds of the paired difference "
            f"(method − {baseline}, same seed value), on each split's primary metric, in points, with the "
            f"p-value of a two-sided paired t-test ({TEST_NAME}); n/a when {baseline} was not run or fewer "
            f"than 2 seeds pair up (p), or the differences do not vary (p). #Params: of the row's model; "
            f"Speed-up: measured teacher/student inference time. Figure: bars = mean, error bars = ±1 "
            f"std (ddof=1) where n ≥ 2, dashed line = teacher (value written beside it); the y axis "
            f"starts at 0 (below 0 only for a negative value) and ends at 1, the score's ceiling."
            + (f" {extra}" if extra else ""))


def markdown(table: pd.DataFrame, baseline: str = BASELINE, title: str = "Method comparison",
             extra: str = "") -> str:
    parts = [f"# {title}", "", caption(baseline, extra), ""]
    for task in _ordered(table["task"]):
        parts += [f"## {task}", "", task_markdown(table, task, baseline), ""]
    return "\n".join(parts)


# ---- the figure -----------------------------------------------------------------------------------

def bar_chart(table: pd.DataFrame, paths: list[str], title: str = "") -> pd.DataFrame:
    """Grouped bars, one panel per task (:func:`analysis.plots.grouped_figure`: a group per
    (split, metric), a bar per method at its mean with a ±1 std error bar (ddof=1) where it has two
    or more seeds, the teacher's mean as a dashed line over the group), written to every path in
    ``paths`` and, beside each, in the other figure formats (PNG and PDF). The y axis follows the
    score-axis rule of :mod:`analysis.figure_style` (from 0; below 0 only for a negative value).
    Returns the plotted bars (task, group, method, mean, std, n)."""
    from analysis import figure_style, plots

    fig, plotted = plots.grouped_figure(table, teacher=TEACHER, title=title)
    for path in dict.fromkeys(figure_style.figure_paths(p)[0] for p in paths):
        figure_style.save_figure(fig, path)
    return plotted


# ---- outputs --------------------------------------------------------------------------------------

def write_outputs(results: pd.DataFrame, out_dir: str, *, prefix: str = "reproduce",
                  baseline: str = BASELINE, title: str = "Method comparison", extra: str = "") -> dict:
    """``<prefix>.md``, ``<prefix>.csv`` (tidy), ``<prefix>_table.csv``, ``<prefix>.png`` and
    ``<prefix>.pdf`` in ``out_dir``; returns ``paths``, ``table``, ``markdown``, ``plotted``."""
    results = check_results(results)
    table = paper_table(results, baseline)
    os.makedirs(out_dir, exist_ok=True)
    paths = {"md": os.path.join(out_dir, f"{prefix}.md"), "csv": os.path.join(out_dir, f"{prefix}.csv"),
             "table_csv": os.path.join(out_dir, f"{prefix}_table.csv"),
             "png": os.path.join(out_dir, f"{prefix}.png"), "pdf": os.path.join(out_dir, f"{prefix}.pdf")}
    results.to_csv(paths["csv"], index=False)
    table.to_csv(paths["table_csv"], index=False)
    md = markdown(table, baseline, title, extra)
    with open(paths["md"], "w") as fh:
        fh.write(md)
    plotted = bar_chart(table, [paths["png"], paths["pdf"]],
                        title="mean over seeds, ±1 std where n ≥ 2; dashed: teacher")
    return {"paths": paths, "table": table, "markdown": md, "plotted": plotted}


def read_results(path: str) -> pd.DataFrame:
    if not os.path.isfile(path):
        raise UserError(f"--from {path!r}: no such file")
    try:
        return check_results(pd.read_csv(path))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"--from {path!r} is not a per-seed results CSV: {err}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.paper_table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", required=True, metavar="CSV",
                   help="per-seed results (the reproduce.csv that python -m tuner.reproduce wrote)")
    p.add_argument("--out", default=None, help="output folder (default: the CSV's folder)")
    p.add_argument("--prefix", default="reproduce", help="output file names (default reproduce)")
    p.add_argument("--baseline", default=BASELINE, help=f"method of the Δ column (default {BASELINE})")
    return p


@exit_on_user_error
def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = build_parser().parse_args(argv)
    results = read_results(args.source)
    out = args.out or os.path.dirname(os.path.abspath(args.source))
    if os.path.abspath(os.path.join(out, f"{args.prefix}.csv")) == os.path.abspath(args.source):
        results = results.copy()  # re-written unchanged (typed)
    written = write_outputs(results, out, prefix=args.prefix, baseline=args.baseline)
    print(written["markdown"])
    print("wrote " + ", ".join(written["paths"].values()))
    return written["table"]


if __name__ == "__main__":
    main(sys.argv[1:])
