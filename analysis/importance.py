"""What mattered: hyperparameter importances, slice plots and a recommendation, from MLflow runs.

    python -m analysis.importance --experiment distill-tune [--task sst2] [--method metadistil]

For each method with runs (or ``--method``), the trials' searched hyperparameters and their primary
dev score become an in-memory Optuna study (``optuna.trial.create_trial`` with the method's search
space as the distributions, widened to what was actually run), and Optuna's own evaluators rank
the hyperparameters (``--evaluator``: ``ped-anova``, ``fanova`` or ``mdi``; PED-ANOVA needs no
model fit and works from a handful of trials). Per method it writes

* ``importance_<method>.png/.pdf``: the importances as bars;
* ``slices_<method>.png/.pdf``: the score against each searched hyperparameter (one panel each, log
  axes where the space is log), the top quarter of the trials highlighted;
* ``importance.md`` / ``importance.json``: the importances and a recommendation: for every
  hyperparameter whose importance is at least ``--min-importance``, the region the top quarter of
  the trials (at least :data:`MIN_TOP` of them) occupies — a range for numbers, the values for
  choices — with the number of trials behind it.

The searched names are the hyperparameters that vary across the method's runs (a value fixed by
``--set`` carries no information). Fewer than :data:`MIN_TRIALS` trials is an error naming how many
there are.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import pandas as pd

from analysis.compare import add_store_args
from analysis.store import Store, score_column
from trainables.config import HPARAMS
from trainables.errors import UserError, check_writable_dir, exit_on_user_error

MIN_TRIALS = 4
MIN_TOP = 3
EVALUATORS = ("ped-anova", "fanova", "mdi")


def searched_columns(runs: pd.DataFrame) -> list[str]:
    """The hyperparameters that took more than one value across ``runs``."""
    return [c for c in HPARAMS if c in runs and runs[c].dropna().astype(str).nunique() > 1]


def distributions(method: str, runs: pd.DataFrame, names: list[str]) -> dict:
    """An Optuna distribution per name: the method's searched range (log scale and choices from
    its space), widened to cover every value the runs used; inferred from the values otherwise."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    try:
        from search_spaces.registry import build_space

        space = build_space(method).searched()
    except UserError:  # a method no longer registered: infer everything
        space = {}
    out = {}
    for name in names:
        values = runs[name].dropna()
        known = space.get(name)
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if isinstance(known, CategoricalDistribution) or not numeric:
            choices = list(known.choices) if isinstance(known, CategoricalDistribution) else []
            extra = [v for v in _python(values.unique()) if v not in choices]
            out[name] = CategoricalDistribution(choices + sorted(extra, key=str))
            continue
        low, high = float(values.min()), float(values.max())
        log = bool(getattr(known, "log", False)) or (low > 0 and high / low >= 100)
        if known is not None:
            low, high = min(low, known.low), max(high, known.high)
        if isinstance(known, IntDistribution) or pd.api.types.is_integer_dtype(values):
            out[name] = IntDistribution(int(low), int(high), log=log and low >= 1)
        else:
            out[name] = FloatDistribution(low, high, log=log and low > 0)
    return out


def _python(values) -> list:
    """numpy scalars -> plain Python values (Optuna's categorical choices must be)."""
    return [v.item() if hasattr(v, "item") else v for v in values]


def study_of(runs: pd.DataFrame, score: str, dists: dict):
    """An in-memory Optuna study holding one completed trial per run."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for _, row in runs.iterrows():
        if pd.isna(row[score]):
            continue
        params = {}
        for name, dist in dists.items():
            value = row[name]
            if pd.isna(value):
                break
            if isinstance(dist, CategoricalDistribution):
                params[name] = _python([value])[0]
            else:
                params[name] = int(value) if type(dist).__name__ == "IntDistribution" else float(value)
        else:
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                      value=float(row[score])))
    return study


def evaluator(name: str):
    from optuna import importance

    if name == "ped-anova":
        return importance.PedAnovaImportanceEvaluator()
    if name == "fanova":
        return importance.FanovaImportanceEvaluator(seed=0)
    if name == "mdi":
        return importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
    raise UserError(f"--evaluator {name!r} is not one of {', '.join(EVALUATORS)}")


def top_trials(study) -> list:
    """The top quarter of the trials by score (at least ``MIN_TOP``)."""
    trials = sorted(study.trials, key=lambda t: t.value, reverse=True)
    return trials[:max(MIN_TOP, math.ceil(len(trials) / 4))]


def recommend(study, importances: dict[str, float], min_importance: float) -> list[dict]:
    """Where the top trials sit, for each hyperparameter that mattered."""
    from optuna.distributions import CategoricalDistribution

    top = top_trials(study)
    rows = []
    for name, weight in importances.items():
        if weight < min_importance:
            continue
        values = [t.params[name] for t in top]
        if isinstance(study.trials[0].distributions[name], CategoricalDistribution):
            counts = pd.Series([str(v) for v in values]).value_counts()
            region = ", ".join(f"{v} ({n})" for v, n in counts.items())
        else:
            region = f"[{_fmt(min(values))}, {_fmt(max(values))}]"
        rows.append({"hyperparameter": name, "importance": weight, "best_region": region,
                     "top_trials": len(top), "trials": len(study.trials)})
    return rows


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def analyse(runs: pd.DataFrame, method: str, *, evaluator_name: str = "ped-anova",
            min_importance: float = 0.1) -> dict:
    """Importances and recommendation of one method's runs."""
    import optuna

    score = score_column(runs)
    names = searched_columns(runs)
    if not names:
        raise UserError(f"{method}: the {len(runs)} runs all used the same hyperparameters; nothing to rank")
    study = study_of(runs, score, distributions(method, runs, names))
    if len(study.trials) < MIN_TRIALS:
        raise UserError(f"{method}: {len(study.trials)} scored trial(s); importances need at least {MIN_TRIALS}")
    importances = optuna.importance.get_param_importances(study, evaluator=evaluator(evaluator_name),
                                                          normalize=True)
    importances = {k: float(v) for k, v in importances.items()}
    return {"method": method, "score": score, "trials": len(study.trials), "evaluator": evaluator_name,
            "importances": importances, "recommendation": recommend(study, importances, min_importance),
            "best_value": study.best_value, "best_params": study.best_params, "study": study,
            "top_trials": [t.number for t in top_trials(study)]}


def markdown(results: list[dict]) -> str:
    lines = []
    for r in results:
        lines += [f"## {r['method']} ({r['trials']} trials, {r['score']}, {r['evaluator']})", "",
                  "| hyperparameter | importance | best region (top trials) |", "|---|---:|---|"]
        regions = {x["hyperparameter"]: f"{x['best_region']} ({x['top_trials']} of {x['trials']})"
                   for x in r["recommendation"]}
        for name, weight in r["importances"].items():
            lines.append(f"| {name} | {weight:.2f} | {regions.get(name, '–')} |")
        lines += ["", f"best trial: {r['score']} = {r['best_value']:.4f} with "
                  + ", ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in r["best_params"].items()), ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.importance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_store_args(p)
    p.add_argument("--task", default=None, help="only the runs of this task")
    p.add_argument("--method", default=None, help="only this method (default: every method with runs)")
    p.add_argument("--sweep", default=None, help="only the runs of this sweep")
    p.add_argument("--evaluator", default="ped-anova", choices=EVALUATORS,
                   help="Optuna's importance evaluator (default ped-anova)")
    p.add_argument("--min-importance", type=float, default=0.1,
                   help="recommend a region for hyperparameters at least this important (default 0.1)")
    p.add_argument("--out", default=None, help="output folder (default: reports/importance)")
    return p


@exit_on_user_error
def main(argv: list[str] | None = None) -> list[dict]:
    from analysis.importance_plots import importance_figure, slices_figure

    args = build_parser().parse_args(argv)
    out_dir = check_writable_dir(args.out or os.path.join("reports", "importance"), "--out")
    store = Store(args.mlflow_uri, args.experiment)
    runs = store.runs(args.task, method=args.method, sweep=args.sweep, exclude_studies=True)
    results, skipped = [], []
    for method, group in runs.groupby("method", sort=True):
        try:
            result = analyse(group.reset_index(drop=True), str(method), evaluator_name=args.evaluator,
                             min_importance=args.min_importance)
        except UserError as err:
            if args.method:
                raise
            skipped.append(str(err))
            continue
        result["figures"] = importance_figure(result, out_dir) + slices_figure(result, out_dir)
        results.append(result)
    if not results:
        raise UserError("no method has enough varied trials for importances: " + "; ".join(skipped))
    text = markdown(results)
    with open(os.path.join(out_dir, "importance.md"), "w") as fh:
        fh.write(text + "\n")
    with open(os.path.join(out_dir, "importance.json"), "w") as fh:
        json.dump([{k: v for k, v in r.items() if k != "study"} for r in results], fh, indent=2, default=str)
    print(text)
    for note in skipped:
        print(f"skipped: {note}")
    print(f"wrote {out_dir}/importance.md, importance.json and the figures")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
