"""The per-method table of a multi-method sweep: each method's trial count, best score and best
config, and the winner; in the summary, on the console and on the sweep's MLflow parent run.

Summary keys (only for a sweep with ``methods``): ``methods`` (the searched list), ``winner`` (the
method of the sweep's best trial) and ``per_method``: one row per method, in the searched order,
with ``method``, ``trials`` (all of its trials), ``terminated``, ``early_stopped``, ``errored``,
``best_score`` (its best trial's ``best_eval_score``; None when no trial of it scored),
``best_trial_id``, ``best_config`` (the best trial's sampled hyperparameters) and
``training_seconds`` (the measured training seconds of all its trials). A method's best trial is
chosen as the sweep's is (:func:`tuner.summary.best_trial`: finished trials first, then trials
stopped early).

On the parent run: metrics ``method.<m>.best_eval_score``, ``method.<m>.num_trials`` and
``method.<m>.training_seconds``; tags ``distill.methods`` (comma-separated) and
``distill.winner``; the table as the artifact ``methods.json``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tuner import tracking

TAG_METHODS = "distill.methods"
TAG_WINNER = "distill.winner"
ARTIFACT = "methods.json"


def trial_method(trial: dict[str, Any]) -> str | None:
    return (trial.get("config") or {}).get("method")


def build(trials: list[dict[str, Any]], methods: list[str], best: dict[str, Any] | None,
          best_of) -> dict[str, Any]:
    """The summary's ``methods``, ``winner`` and ``per_method`` from the sweep's trials
    (:func:`tuner.summary.collect_trials`); ``best_of`` picks a list's best trial."""
    rows = []
    for method in methods:
        mine = [t for t in trials if trial_method(t) == method]
        top = best_of(mine)
        rows.append({
            "method": method, "trials": len(mine),
            "terminated": sum(t["status"] == tracking.STATUS_TERMINATED for t in mine),
            "early_stopped": sum(t["status"] == tracking.STATUS_EARLY_STOPPED for t in mine),
            "errored": sum(t["status"] == tracking.STATUS_ERROR for t in mine),
            "best_score": top["metrics"]["best_eval_score"] if top else None,
            "best_trial_id": top["trial_id"] if top else None,
            "best_config": {k: v for k, v in top["config"].items() if k != "method"} if top else None,
            "training_seconds": sum(t.get("_training_seconds") or 0.0 for t in mine),
        })
    return {"methods": list(methods), "winner": trial_method(best) if best else None, "per_method": rows}


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_table(summary: dict[str, Any]) -> str:
    """The console's per-method table (a Markdown table) and the winner."""
    budget = (summary.get("search") or {}).get("budget") or {}
    lines = [f"methods searched: {', '.join(summary['methods'])}; ASHA budget: {budget.get('budget', 'steps')} "
             f"(trials compared at equal {budget.get('unit', 'evaluations')})",
             f"| method | trials | finished | early-stopped | errored | best {summary['metric_name']} | "
             "training s | best config |", "|---|---|---|---|---|---|---|---|"]
    for r in summary["per_method"]:
        config = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted((r["best_config"] or {}).items()))
        score = "-" if r["best_score"] is None else f"{r['best_score']:.4f}"
        lines.append(f"| {r['method']} | {r['trials']} | {r['terminated']} | {r['early_stopped']} | {r['errored']} | "
                     f"{score} | {r['training_seconds']:.1f} | {config or '-'} |")
    lines.append(f"winner: {summary['winner'] or 'none (no trial scored)'}")
    return "\n".join(lines)


def parent_metrics(summary: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in summary["per_method"]:
        out[f"method.{r['method']}.num_trials"] = r["trials"]
        out[f"method.{r['method']}.training_seconds"] = r["training_seconds"]
        if r["best_score"] is not None:
            out[f"method.{r['method']}.best_eval_score"] = r["best_score"]
    return out


def record(summary: dict[str, Any], uri: str, parent_run_id: str, directory: str) -> None:
    """The table on the sweep's parent run: metrics, tags and ``methods.json``. Tracking failures
    are a warning (the summary has the table)."""
    try:
        c = tracking.client(uri)
        tracking.log_metrics(c, parent_run_id, parent_metrics(summary), 0)
        c.set_tag(parent_run_id, TAG_METHODS, ",".join(summary["methods"]))
        if summary["winner"]:
            c.set_tag(parent_run_id, TAG_WINNER, summary["winner"])
        path = os.path.join(directory, ARTIFACT)
        with open(path, "w") as fh:
            json.dump({k: summary[k] for k in ("methods", "winner", "per_method")} | {
                "budget": (summary.get("search") or {}).get("budget")}, fh, indent=2, default=str)
        c.log_artifact(parent_run_id, path)
    except Exception as err:
        import sys

        print(f"warning: MLflow logging (per-method table) failed: {type(err).__name__}: {err}", file=sys.stderr)
