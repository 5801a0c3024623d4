"""From Ray Tune's results to the sweep summary (console + JSON) and the exported best student.

Summary JSON keys: ``sweep``, ``method``, ``task``, ``metric_name`` (the task's primary metric),
``metric_key`` (``eval_score``), ``best_metric``, ``best_config``, ``best_trial_id``,
``best_dev_metrics``, ``best_student`` (sizes, speed-up), ``best_student_path``, ``counts``
(TERMINATED / ERROR / EARLY_STOPPED), ``trials`` (``trial_id``, ``config``, ``status``,
``metrics`` (final metrics), ``error``, ``node_id``, ``gpu_ids``, ``path``), ``seeds`` (with ``--seeds``:
``seeds``, ``scores``, ``mean``, ``std``), ``mlflow_uri``, ``mlflow_experiment``,
``mlflow_experiment_id``, ``mlflow_parent_run_id``, ``storage_dir``, ``ray_address``,
``wall_seconds``; added by the sweep: ``interrupted`` (Ctrl-C left trials UNFINISHED or samples
not started), ``not_started``, ``resume_command`` (when interrupted), ``packing`` (trials per node
and per GPU, :func:`tuner.cluster.packing`), ``time`` (where the wall time went and the fraction
that trained, :mod:`tuner.timing`); ``search.budget`` says what ASHA compared trials at
(:mod:`tuner.budget`); a multi-method sweep adds ``methods``, ``winner`` and ``per_method``
(:mod:`tuner.method_table`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import sys
from typing import Any

from trainables.trainable import EVALUATION, GPU_IDS, NODE, STUDENT_DIR

from tuner import budget, timing, tracking

_TRIAL_ID = re.compile(r"_([0-9a-f]{5}_\d{5})(?:_|$)")


def _error_text(err: BaseException | None) -> str | None:
    if err is None:
        return None
    cause = getattr(err, "cause", None) or err
    text = f"{type(cause).__name__}: {cause}".strip()
    return text.splitlines()[-1] if "Traceback" in text else text


#: summary status of a trial an interrupted driver left running or pending (``--resume`` continues it)
STATUS_UNFINISHED = tracking.STATUS_UNFINISHED
#: Ray's statuses of a trial that will not run again (a resume neither continues nor restarts it)
_RAY_DONE = ("TERMINATED", "ERROR")


def _saved_statuses(results) -> dict[str, str]:
    """Each trial's status in the experiment state Ray saved last, which is what ``--resume``
    continues from. Neither view alone is the truth (Ray 2.60): after Ctrl-C Ray saves the trials
    it was running as RUNNING, then marks them TERMINATED in memory while it stops them; a trial
    whose worker died is ERROR in memory but stays RUNNING in the saved state (so a resume
    retries it once more)."""
    from ray.tune import ExperimentAnalysis

    try:
        trials = ExperimentAnalysis(results.experiment_path).trials
    except Exception as err:  # no state: every trial counts as unfinished, nothing is pruned
        print(f"warning: cannot read Ray's experiment state in {results.experiment_path}: {err}", file=sys.stderr)
        return {}
    return {t.trial_id: t.status for t in trials}


def collect_trials(results) -> list[dict[str, Any]]:
    """One entry per trial of a ResultGrid, in trial order."""
    trials = []
    ray_status = _saved_statuses(results)
    for r in results:
        m = dict(r.metrics or {})
        errored = r.error is not None
        trial_id = m.get("trial_id")
        if not trial_id and r.path:
            found = _TRIAL_ID.search(os.path.basename(r.path))
            trial_id = found.group(1) if found else os.path.basename(r.path)
        saved = ray_status.get(trial_id)  # None: unknown to Ray's state, never assume it is done
        status = tracking.trial_status(m, errored)
        if not errored and saved not in _RAY_DONE:
            status = STATUS_UNFINISHED
        trials.append({
            "trial_id": trial_id,
            "config": dict(r.config or {}),
            "status": status,
            "metrics": tracking.final_metrics(m),
            "evaluations": m.get(EVALUATION, m.get("evaluations")),
            "error": _error_text(r.error) if errored else None,
            "node_id": m.get(NODE),
            "gpu_ids": m.get(GPU_IDS),
            "path": r.path,
            "_checkpoint": r.checkpoint,
            "_resumable": saved not in _RAY_DONE,  # a resume continues it from its checkpoint
            **timing.trial_times(m),
        })
    return sorted(trials, key=lambda t: str(t["trial_id"]))


def best_trial(trials: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The best trial by ``best_eval_score`` among those that finished training (else among those
    stopped early; errored trials never count)."""
    for status in (tracking.STATUS_TERMINATED, tracking.STATUS_EARLY_STOPPED):
        pool = [t for t in trials if t["status"] == status and "best_eval_score" in t["metrics"]]
        if pool:
            return max(pool, key=lambda t: t["metrics"]["best_eval_score"])
    return None


def export_student(trial: dict[str, Any], dest: str) -> str | None:
    """Copy the trial's best student (``save_pretrained`` + tokenizer) to ``dest``."""
    checkpoint = trial.get("_checkpoint")
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        src = os.path.join(directory, STUDENT_DIR)
        if not os.path.isdir(src):
            return None
        if os.path.exists(dest):
            shutil.rmtree(dest)
        shutil.copytree(src, dest)
    return dest


def prune_engine_states(trials: list[dict[str, Any]]) -> int:
    """Delete the engine states (optimiser and model state, the bulk of a checkpoint) of trials
    that will never train again (finished, stopped early or errored; a resume does not restart
    them); their final checkpoint (best student, logs) and step logs stay. Local storage only.
    A trial Ray may still continue (not TERMINATED or ERROR in Ray's saved state: left running or
    pending by an interrupt, errored with its worker, or missing from the state) keeps every file.
    Returns the number of files deleted."""
    from trainables.engine_state import CHECKPOINT_FILE

    deleted = 0
    for trial in trials:
        if trial.get("_resumable", True) or not trial.get("path") or not os.path.isdir(trial["path"]):
            continue
        for name in os.listdir(trial["path"]):
            state = os.path.join(trial["path"], name, CHECKPOINT_FILE)
            if name.startswith("checkpoint_") and os.path.isfile(state):
                os.remove(state)
                deleted += 1
    return deleted


def seed_stats(seeds: list[int], scores: list[float], trials: list[dict[str, Any]]) -> dict[str, Any]:
    return {"seeds": seeds, "scores": scores, "n": len(scores),
            "mean": statistics.fmean(scores) if scores else None,
            "std": statistics.stdev(scores) if len(scores) > 1 else (0.0 if scores else None),
            "trials": [_public(t) for t in trials]}


def _public(trial: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in trial.items() if not k.startswith("_")}


def counts(trials: list[dict[str, Any]]) -> dict[str, int]:
    out = {s: sum(t["status"] == s for t in trials) for s in tracking.STATUSES}
    unfinished = sum(t["status"] == STATUS_UNFINISHED for t in trials)
    if unfinished:
        out[STATUS_UNFINISHED] = unfinished
    return out


def build_summary(spec, prep, trials, best, *, student_path, parent_run_id, experiment_id, seeds,
                  address, wall_seconds) -> dict[str, Any]:
    from trainables.tasks import get_task

    base = prep.base
    try:
        primary = get_task(base["task"], base.get("text_columns"), base.get("label_column"),
                           base.get("task_type"), base.get("data_dir")).primary_metric
    except Exception:
        primary = "score"
    best_metrics = best["metrics"] if best else {}
    dev = {k[len("best_"):]: v for k, v in best_metrics.items()
           if k.startswith("best_eval_") and k != "best_eval_score"}
    test = {k: v for k, v in best_metrics.items() if k.startswith("test_")}
    student = {k: best_metrics[k] for k in ("student_params", "teacher_params", "param_ratio", "speedup",
                                            "student_infer_seconds", "teacher_infer_seconds")
               if k in best_metrics}
    if best:
        for k in ("student_layers", "teacher_layers"):
            if k in best_metrics:
                student[k] = best_metrics[k]
    return {
        "sweep": spec.name, "method": spec.method, "task": str(base["task"]),
        "metric_name": primary, "metric_key": "eval_score",
        "best_metric": best_metrics.get("best_eval_score"),
        "best_config": {**best["config"]} if best else None,
        "best_trial_id": best["trial_id"] if best else None,
        "best_trial_status": best["status"] if best else None,
        "best_dev_metrics": dev,
        "best_test_metrics": test,
        "best_student": student,
        "best_student_path": student_path,
        "counts": counts(trials),
        "num_trials": len(trials),
        "trials": [_public(t) for t in trials],
        "seeds": seeds,
        "search": {"mode": "grid" if prep.grid else "optuna-tpe", "scheduler": spec.scheduler_name,
                   "space": dict(prep.space.describe()) if prep.space else None, "grid": prep.grid,
                   "fixed": spec.fixed, "num_samples": spec.num_samples,
                   "max_concurrent": spec.max_concurrent, "eval_steps": prep.eval_steps,
                   "budget": budget.describe(spec.budget) if spec.scheduler_name == "asha" else None},
        "mlflow_uri": prep.tracking_uri, "mlflow_experiment": spec.experiment,
        "mlflow_experiment_id": experiment_id, "mlflow_parent_run_id": parent_run_id,
        "mlflow_artifacts": _artifact_location(prep.tracking_uri, experiment_id),
        "storage_dir": spec.experiment_dir, "ray_address": address,
        "wall_seconds": wall_seconds,
    }


def _artifact_location(uri: str, experiment_id: str) -> str | None:
    """Where the experiment's artifacts are stored (next to a SQLite store; the server's root
    otherwise), for the summary."""
    try:
        return tracking.client(uri).get_experiment(experiment_id).artifact_location
    except Exception:  # the summary never fails on tracking
        return None


def parent_metrics(summary: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {f"num_{k.lower()}": v for k, v in summary["counts"].items()}
    out["num_trials"] = summary["num_trials"]
    if summary["best_metric"] is not None:
        out["best_eval_score"] = summary["best_metric"]
    for k, v in summary["best_dev_metrics"].items():
        out[f"best_{k}"] = v
    out.update(summary.get("best_test_metrics") or {})
    out.update({k: v for k, v in summary["best_student"].items()})
    for key, value in (summary.get("time") or {}).items():
        if isinstance(value, (int, float)):
            out[f"time_{key}"] = value
    seeds = summary.get("seeds") or {}
    if seeds.get("mean") is not None:
        out["seeds_mean_eval_score"] = seeds["mean"]
        out["seeds_std_eval_score"] = seeds["std"]
    return out


def write_json(summary: dict[str, Any], path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(summary, fh, indent=2, default=str)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_summary(summary: dict[str, Any]) -> str:
    """The end-of-sweep report for the console."""
    c = summary["counts"]
    lines = [f"== sweep {summary['sweep']}: {summary['method']} on {summary['task']} ==",
             f"trials: {summary['num_trials']} ({c['TERMINATED']} terminated, {c['EARLY_STOPPED']} "
             f"early-stopped, {c['ERROR']} errored"
             + (f", {c[STATUS_UNFINISHED]} unfinished" if c.get(STATUS_UNFINISHED) else "")
             + (f", {summary['not_started']} not started" if summary.get("not_started") else "") + ")"]
    if (summary.get("search") or {}).get("budget"):
        b = summary["search"]["budget"]
        lines.append(f"ASHA budget: {b['budget']} (trials compared at equal {b['unit']}, time_attr {b['time_attr']})")
    if summary.get("interrupted"):
        lines.append(f"interrupted: continue with {summary['resume_command']}")
    if summary["best_config"] is None:
        lines.append("no trial produced a result")
    else:
        lines.append(f"best trial {summary['best_trial_id']}: {summary['metric_name']} (eval_score) = "
                     f"{_fmt(summary['best_metric'])}")
        lines.append("  config: " + ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(summary["best_config"].items())))
        if summary["best_dev_metrics"]:
            lines.append("  dev: " + ", ".join(f"{k}={_fmt(v)}" for k, v in summary["best_dev_metrics"].items()))
        if summary.get("best_test_metrics"):
            lines.append("  test: " + ", ".join(f"{k}={_fmt(v)}" for k, v in summary["best_test_metrics"].items()))
        s = summary["best_student"]
        if s:
            size = f"  student: {_fmt(s.get('student_params'))} params"
            if "student_layers" in s:
                size += f", {s['student_layers']} layers"
            if "teacher_params" in s:
                size += f" (teacher {_fmt(s['teacher_params'])}, {_fmt(s.get('param_ratio'))}x smaller)"
            if "speedup" in s:
                size += f", measured speed-up {_fmt(s['speedup'])}x"
            lines.append(size)
        if summary["best_student_path"]:
            lines.append(f"  best student saved to {summary['best_student_path']}")
    seeds = summary.get("seeds")
    if seeds and seeds.get("mean") is not None:
        lines.append(f"seed re-runs {seeds['seeds']}: eval_score {seeds['mean']:.4f} ± {seeds['std']:.4f} "
                     f"(n={seeds['n']})")
    for t in summary["trials"]:
        if t["status"] == tracking.STATUS_ERROR:
            lines.append(f"  errored trial {t['trial_id']}: {t['error']}")
    if summary.get("pbt"):
        from tuner.pbt import format_schedules

        lines.extend(format_schedules(summary))
    if summary.get("time"):
        lines.append(timing.format_breakdown(summary["time"]))
    lines.append(f"MLflow: experiment {summary['mlflow_experiment']!r} at {summary['mlflow_uri']} "
                 f"(parent run {summary['mlflow_parent_run_id']}); artifacts (step logs, the best "
                 f"student) in {summary.get('mlflow_artifacts')}")
    lines.append(f"results: {summary['storage_dir']}")
    return "\n".join(lines)
