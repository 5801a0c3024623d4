"""The sweeps' MLflow store: the experiment (created once, safely across processes, in the
model-training view), params and metrics in batches, the sweep's parent run (with provenance and
the fine-tuned teacher's reference metrics), finding a sweep's runs, the best student, ending the
parent run. Ray-free; the per-trial logging is :class:`tuner.tracking.MlflowTrialLogger`."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from trainables.config import DistillConfig
from trainables.errors import UserError
from trainables.trainable import is_number
from tuner.mlflow_schema import (ARTIFACT_STUDENT, EXPERIMENT_KIND, ROLE_SWEEP, ROLE_TRIAL, TAG_EXPERIMENT_KIND,
                                 TAG_METHOD, TAG_ROLE, TAG_SWEEP, TAG_TASK, client, is_lost, search_all_runs,
                                 teacher_reference_metrics)


# ---- the store --------------------------------------------------------------------------------

def store_lock(uri: str):
    """A lock across processes (``<database>.lock``) around creating a SQLite store and its
    experiments: MLflow creates a new database's tables with migrations that fail or half-apply
    when two processes run them at once (two sweeps started together on a new store). Other
    stores need none (a nullcontext)."""
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from filelock import FileLock

    return FileLock(uri[len("sqlite:///"):] + ".lock")


def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment ``name`` in the store, created (with a local artifact folder next to a
    SQLite database) when missing; safe when several processes create the same store and
    experiment at once."""
    with store_lock(uri):
        return _ensure_experiment(uri, name)


def _ensure_experiment(uri: str, name: str) -> str:
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise UserError(f"MLflow experiment {name!r} is deleted; restore it or use another --experiment")
        if TAG_EXPERIMENT_KIND not in exp.tags:  # an experiment from before: the model-training view
            c.set_experiment_tag(exp.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND)
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        folder = os.path.join(os.path.dirname(uri[len("sqlite:///"):]), "mlartifacts")
        location = Path(folder).as_uri()
    try:
        return c.create_experiment(name, artifact_location=location,
                                   tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND})
    except Exception:  # created concurrently by another driver
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def param_value(value: Any) -> str:
    return "None" if value is None else str(value)


def config_params(config: dict[str, Any], method: str | None = None) -> dict[str, str]:
    """The DistillConfig fields of ``config`` as MLflow params: every setup field, and the
    hyperparameters ``method`` reads (:meth:`~trainables.methods.base.Method.hyperparameters`; all
    of them without a method); unset (None) values are left out rather than written as "None", and so
    is ``student_layers`` with a named ``student``."""
    from trainables.config import HPARAMS
    from trainables.methods import get_method

    used = get_method(method).hyperparameters() if method else set(HPARAMS)
    fields = DistillConfig().to_dict()
    values = {k: config.get(k, v) for k, v in fields.items() if k not in HPARAMS or k in used}
    if values.get("student"):  # a named student: student_layers (the truncated student's) is unread, and
        values.pop("student_layers", None)  # the model's own layer count is logged under that name
    return {k: param_value(v) for k, v in values.items() if v is not None}


def log_params(c, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, param_value(v)) for k, v in params.items()]
    for i in range(0, len(items), 100):
        c.log_batch(run_id, params=items[i:i + 100])


def log_metrics(c, run_id: str, metrics: dict[str, float], step: int, timestamp: int | None = None) -> None:
    from mlflow.entities import Metric

    ts = timestamp or int(time.time() * 1000)
    items = [Metric(k, float(v), ts, int(step)) for k, v in metrics.items()]
    for i in range(0, len(items), 500):
        c.log_batch(run_id, metrics=items[i:i + 500])


def start_parent_run(uri: str, experiment_id: str, sweep: str, method: str, task: str,
                     tags: dict[str, str] | None = None, params: dict[str, Any] | None = None,
                     teacher_paths: list[str] | None = None) -> str:
    """Create the sweep's parent run, with the fine-tuned teacher's dev/test metrics
    (``teacher_eval_<m>``, the reference of every comparison); return its id."""
    from tuner import provenance

    c = client(uri)
    run = c.create_run(experiment_id, run_name=sweep, tags={
        TAG_ROLE: ROLE_SWEEP, TAG_SWEEP: sweep, TAG_METHOD: method, TAG_TASK: task, **provenance.tags(),
        **(tags or {})})
    if params:
        log_params(c, run.info.run_id, params)
        try:  # the data the sweep read, as MLflow dataset inputs
            provenance.log_datasets(c, run.info.run_id, params)
        except Exception as err:
            print(f"warning: logging the dataset inputs failed: {type(err).__name__}: {err}", file=sys.stderr)
    reference = teacher_reference_metrics((teacher_paths or [None])[0])
    if reference:
        log_metrics(c, run.info.run_id, reference, 0)
    return run.info.run_id


def find_runs(uri: str, experiment_id: str, sweep: str, role: str = ROLE_TRIAL, *, lost: bool = False) -> list:
    """The runs of ``sweep`` with the given role (all pages); LOST trial runs only with ``lost``."""
    runs = search_all_runs(client(uri), [experiment_id],
                           f"tags.`{TAG_SWEEP}` = '{sweep}' and tags.`{TAG_ROLE}` = '{role}'")
    return [r for r in runs if lost or not is_lost(r)]


def log_best_student(uri: str, parent_run_id: str, student_dir: str, *, pair: bool = False,
                     register_as: str | None = None) -> str | None:
    """The best student on the parent run as an MLflow model (:mod:`tuner.model_export`, which
    carries the student's files; registered as ``register_as`` when given). Returns the model URI;
    where logging the model fails, the files alone go under ``student/`` (a warning says why) and
    None is returned."""
    from tuner.model_export import log_student_model

    try:
        return log_student_model(uri, parent_run_id, student_dir, pair=pair, register_as=register_as)
    except Exception as err:  # the sweep's results never depend on the model registry
        print(f"warning: logging the best student as an MLflow model failed ({type(err).__name__}: {err}); "
              f"its files are logged under {ARTIFACT_STUDENT}/", file=sys.stderr)
        client(uri).log_artifacts(parent_run_id, student_dir, artifact_path=ARTIFACT_STUDENT)
        return None


def finish_parent_run(uri: str, parent_run_id: str, metrics: dict[str, float], summary_path: str | None,
                      status: str = "FINISHED") -> None:
    c = client(uri)
    if metrics:
        log_metrics(c, parent_run_id, {k: v for k, v in metrics.items() if is_number(v)}, 0)
    if summary_path and os.path.isfile(summary_path):
        c.log_artifact(parent_run_id, summary_path)
    c.set_terminated(parent_run_id, status=status)
