"""Compare methods on one task from what the sweeps recorded (the papers' Table 1/3).

    python -m analysis.compare --task sst2 [--mlflow-uri URI] [--experiment NAME] [--out DIR]

Writes ``compare.md`` (the table), ``compare.csv`` (the same numbers, unformatted) and
``compare.png`` / ``compare.pdf`` (bar chart: ±1 std error bars for methods with several seeds, the
fine-tuned teacher's dev score as a dashed reference line where it is known, see
:mod:`analysis.teacher_ref`; ``--teacher-score`` gives it) into ``--out`` and prints the table.

Which runs make a method's row (the rule, applied to each method's successful trial runs on the
task; sensitivity-study runs are left out unless ``--include-studies``):

1. Runs are grouped by configuration: every hyperparameter except ``seed`` (and the teacher,
   student and data caps), compared as recorded. Within a group one run per seed is kept (the
   latest, when a seed was run twice).
2. If some group holds two or more seeds (e.g. the best configuration re-run with ``--seeds``), the
   row reports that group: mean ± sample standard deviation (ddof=1) over its seeds and the number of
   seeds. Of several such groups, the one with the highest mean primary metric is reported.
3. Otherwise the row reports the single best run (highest primary metric), with n = 1 and no std.

``<metric>_best`` is always the best single run of the method (any configuration), with its run id.
Parameter counts, teacher/student parameter ratio, the measured inference speed-up and the training
wall time are means over the reported runs.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd

from analysis import plots
from analysis import time_to_quality as ttq
from analysis.figure_style import figure_paths
from analysis.store import Store, metric_column, score_column, task_metrics
from analysis.teacher_ref import teacher_scores
from trainables.config import HPARAMS
from trainables.errors import UserError, check_writable_dir, exit_on_user_error

#: setup fields that make two runs different configurations (besides the hyperparameters)
CONFIG_SETUP_KEYS = ("teacher", "teachers", "teacher_checkpoint", "student", "max_train_samples",
                     "max_eval_samples")
#: hyperparameters that do not distinguish configurations (their runs are pooled as seeds)
SEED_KEYS = ("seed",)
#: cost columns averaged over the reported runs
COST_COLUMNS = ("student_params", "teacher_params", "student_layers", "param_ratio", "speedup",
                "train_seconds", "step_ms", "peak_mem_mb")


def config_key(df: pd.DataFrame) -> pd.Series:
    """A string per run identifying its configuration up to the seed."""
    cols = [c for c in (*HPARAMS, *CONFIG_SETUP_KEYS) if c in df.columns and c not in SEED_KEYS]
    if not cols:
        return pd.Series("", index=df.index)
    text = df[cols].astype(object).map(lambda v: "None" if v is None or v is pd.NA or v != v else str(v))
    return text.agg("|".join, axis=1)


def _one_per_seed(group: pd.DataFrame) -> pd.DataFrame:
    if "seed" not in group:
        return group
    return group.sort_values("start_time").drop_duplicates("seed", keep="last")


def select_runs(runs: pd.DataFrame, score: str) -> tuple[pd.DataFrame, str]:
    """The runs reporting one method (see the module docstring) and how they were chosen:
    ``"seeds"`` (a multi-seed group) or ``"best"`` (the best single run)."""
    groups = [_one_per_seed(g) for _, g in runs.groupby(config_key(runs), sort=False)]
    multi = [g for g in groups if len(g) >= 2]
    if multi:
        best = max(multi, key=lambda g: (g[score].mean(), len(g)))
        return best, "seeds"
    return runs.loc[[runs[score].idxmax()]], "best"


def _std(values: pd.Series) -> float:
    values = values.dropna()
    return float(np.std(values, ddof=1)) if len(values) >= 2 else float("nan")


def compare_table(runs: pd.DataFrame, task: str | None = None) -> pd.DataFrame:
    """One row per method (sorted by the mean primary metric, best first) with columns ``method``,
    ``selection``, ``n_runs``, ``n_seeds``, ``<m>_mean``/``<m>_std`` for each dev metric ``m`` of the
    task, ``<primary>_best``, ``best_run_id``, the cost columns and ``run_ids``."""
    score = score_column(runs)
    primary, metrics = task_metrics(task, runs)
    rows = []
    for method, mruns in runs.dropna(subset=[score]).groupby("method", sort=True):
        chosen, how = select_runs(mruns, score)
        row = {"method": method, "selection": how, "n_runs": len(mruns), "n_seeds": len(chosen)}
        for m in metrics:
            col = score if m == primary else metric_column(chosen, m)
            if col is None:
                continue
            row[f"{m}_mean"] = float(chosen[col].mean())
            row[f"{m}_std"] = _std(chosen[col])
        best = mruns.loc[mruns[score].idxmax()]
        row[f"{primary}_best"] = float(best[score])
        row["best_run_id"] = best["run_id"]
        for col in COST_COLUMNS:
            if col in chosen and chosen[col].notna().any():
                row[col] = float(chosen[col].astype(float).mean())
        row["run_ids"] = ";".join(chosen["run_id"])
        rows.append(row)
    if not rows:
        raise UserError(f"no run{' of task ' + repr(task) if task else ''} has recorded a dev score "
                        f"({score}) yet")
    table = pd.DataFrame(rows)
    order = ["method", "selection", "n_runs", "n_seeds",
             *[f"{m}_{k}" for m in metrics for k in ("mean", "std")], f"{primary}_best", "best_run_id",
             *COST_COLUMNS, "run_ids"]
    table = table[[c for c in order if c in table.columns]]
    return table.sort_values(f"{primary}_mean", ascending=False, kind="stable").reset_index(drop=True)


# ---- formatting -----------------------------------------------------------------------------------

def format_count(n: float, significant: int | None = None) -> str:
    """``11.0M`` (one decimal), or with ``significant`` digits (``1.02M``, ``991K``)."""
    if pd.isna(n):
        return "–"
    for unit, size in (("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.{significant}g}{unit}" if significant else f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _score(mean: float, std: float, n: int) -> str:
    if pd.isna(mean):
        return "–"
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if n >= 2 and not pd.isna(std) else f"{100 * mean:.2f}"


def _seconds(s: float) -> str:
    if pd.isna(s):
        return "–"
    return f"{s / 60:.1f} min" if s >= 600 else f"{s:.1f} s"


def markdown_table(table: pd.DataFrame, task: str | None) -> str:
    """The table as GitHub markdown, dev metrics ×100."""
    metrics = [c[:-len("_mean")] for c in table.columns if c.endswith("_mean")]
    primary = next(c[:-len("_best")] for c in table.columns if c.endswith("_best"))
    header = ["Method", "#Params", "Teacher/student params", "Speed-up", *metrics, f"best {primary}",
              "Seeds", "Runs", "Train time", "ms/step", "Peak mem"]
    if ttq.COLUMN in table:
        header.append("To KD's best")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in table.iterrows():
        cells = [str(r["method"]), format_count(r.get("student_params", np.nan)),
                 f"{r['param_ratio']:.1f}×" if not pd.isna(r.get("param_ratio", np.nan)) else "–",
                 f"{r['speedup']:.2f}×" if not pd.isna(r.get("speedup", np.nan)) else "–",
                 *[_score(r[f"{m}_mean"], r[f"{m}_std"], int(r["n_seeds"])) for m in metrics],
                 _score(r[f"{primary}_best"], np.nan, 1), str(int(r["n_seeds"])), str(int(r["n_runs"])),
                 _seconds(r.get("train_seconds", np.nan)),
                 f"{r['step_ms']:.0f}" if not pd.isna(r.get("step_ms", np.nan)) else "–",
                 f"{r['peak_mem_mb'] / 1024:.2f} GB" if not pd.isna(r.get("peak_mem_mb", np.nan)) else "–"]
        if ttq.COLUMN in table:
            cells.append(ttq.format_seconds(r[ttq.COLUMN]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(table: pd.DataFrame, out_dir: str, *, task: str, experiment: str, uri: str,
                  teachers: list | None = None) -> dict:
    """compare.md, compare.csv, compare.png and compare.pdf in ``out_dir``; returns their paths,
    the plotted data and the teacher reference lines drawn (``teachers``, see
    :func:`analysis.teacher_ref.teacher_scores`)."""
    os.makedirs(out_dir, exist_ok=True)
    primary = next(c[:-len("_best")] for c in table.columns if c.endswith("_best"))
    paths = {name: os.path.join(out_dir, f"compare.{name}") for name in ("md", "csv")}
    paths.update({os.path.splitext(p)[1][1:]: p for p in figure_paths(os.path.join(out_dir, "compare"))})
    table.to_csv(paths["csv"], index=False)
    md = markdown_table(table, task)
    with open(paths["md"], "w") as fh:
        fh.write(f"# {task}: method comparison\n\n"
                 f"Experiment `{experiment}` at `{uri}`. Dev-set {primary} and other dev metrics ×100. "
                 "Where a method's configuration was run with several seeds: mean ± sample std (ddof=1) "
                 "over the seeds (Seeds = n); otherwise its best single run. `best` is the method's best "
                 "single run. #Params: student; Speed-up: measured teacher/student inference time; ms/step: "
                 "median training step (evaluation excluded); Peak mem: peak GPU memory allocated, or "
                 "the training process's peak RSS on CPU; To KD's best: training seconds (evaluation "
                 "excluded) the method's best trial took to first reach KD's best dev score.\n\n"
                 f"{md}\n")
    spread = ("mean ± std over seeds where n ≥ 2, else the best run" if (table["n_seeds"] >= 2).any()
              else "the best run of each method, one seed")
    plotted = plots.comparison_bars(table, paths["png"], value=f"{primary}_mean", error=f"{primary}_std",
                                    ylabel=f"dev {primary}", title=f"{task}: dev {primary} by method ({spread})",
                                    teachers=teachers)
    return {"paths": paths, "markdown": md, "plotted": plotted, "teachers": list(teachers or [])}


# ---- CLI ------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="task name as recorded (e.g. sst2)")
    add_store_args(parser)
    parser.add_argument("--methods", default=None, help="only these methods, comma-separated")
    parser.add_argument("--sweep", default=None, help="only the runs of this sweep")
    parser.add_argument("--include-studies", action="store_true",
                        help="also count sensitivity-study runs")
    parser.add_argument("--out", default=None, help="output folder (default: reports/<task>)")
    add_teacher_score_arg(parser)
    return parser


def add_teacher_score_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher-score", type=float, default=None, metavar="VALUE",
                        help="the fine-tuned teacher's dev score on the plotted metric, drawn as the "
                             "reference line (default: read from the sweep run or the teacher's "
                             "teacher_info.json when recorded; none: no line)")


def chosen_runs(runs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The runs that make the table's rows."""
    ids = {i for text in table.get("run_ids", pd.Series(dtype=str)).dropna() for i in text.split(";")}
    return runs[runs["run_id"].isin(ids)]


def add_store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mlflow-uri", default=None,
                        help="tracking URI (default: sqlite:///<cwd>/mlflow.db, as the sweeps)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: distill-tune)")


def split_list(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


@exit_on_user_error
def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = build_parser().parse_args(argv)
    out_dir = check_writable_dir(args.out or os.path.join("reports", args.task), "--out")
    store = Store(args.mlflow_uri, args.experiment)
    runs = store.runs(args.task, method=split_list(args.methods), sweep=args.sweep,
                      exclude_studies=not args.include_studies)
    table = compare_table(runs, args.task)
    primary, _ = task_metrics(args.task, runs)
    table = ttq.add_column(table, store, primary)
    teachers = teacher_scores(store, chosen_runs(runs, table), primary, given=args.teacher_score)
    out = write_outputs(table, out_dir, task=args.task,
                        experiment=store.experiment, uri=store.uri, teachers=teachers)
    print(out["markdown"])
    print("\nwrote " + ", ".join(out["paths"].values()))
    return table


if __name__ == "__main__":
    main(sys.argv[1:])
