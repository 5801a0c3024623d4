"""The MLflow schema of the sweeps and the tracking store's address; no Ray.

:mod:`tuner.tracking` writes these names and :mod:`analysis` reads them (keep them stable):

* experiment ``--experiment`` (:data:`DEFAULT_EXPERIMENT`);
* a parent run per sweep (run name = sweep name; tags ``distill.role=sweep``, ``distill.sweep``,
  ``distill.method``, ``distill.task``); the best trial's student under artifact path ``student``;
* a child run per trial (tags ``mlflow.parentRunId``, ``distill.role=trial``, ``distill.sweep``,
  ``distill.trial_id``, ``distill.ray_experiment`` (the Ray Tune experiment that ran it: the sweep,
  or ``<sweep>-seeds``), ``distill.method``, ``distill.task``, ``distill.status`` (TERMINATED |
  ERROR | EARLY_STOPPED; UNFINISHED or LOST on a KILLED run), ``distill.error`` (when errored),
  ``distill.seed_rerun=true`` for ``--seeds`` re-runs, plus the sweep's extra tags such as
  ``distill.study``);
* params: every :class:`~trainables.config.DistillConfig` field under its own name (None ->
  "None") plus ``teacher_id``, ``student_id``, ``teacher_params``, ``student_params``,
  ``teacher_layers``, ``student_layers``;
* step metrics at each evaluation (step = the engine's global step): every numeric reported value;
* final metrics (:data:`FINAL_METRICS`, ``best_eval_<m>``; ``eval_score`` logged last so its
  latest value is the best one);
* artifacts ``step_logs.csv`` (the engine's per-step logs) and ``summary.json``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import urlparse

from trainables.errors import UserError
from trainables.trainable import FINAL, MODEL_KEYS, STEP_LOGS_FILE, TRIAL_SUMMARY_FILE, is_number

DEFAULT_EXPERIMENT = "distill-tune"
DEFAULT_DB_FILE = "mlflow.db"

TAG_PARENT = "mlflow.parentRunId"
TAG_ROLE = "distill.role"
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
TAG_SWEEP = "distill.sweep"
TAG_TRIAL_ID = "distill.trial_id"
TAG_METHOD = "distill.method"
TAG_TASK = "distill.task"
TAG_STATUS = "distill.status"
TAG_ERROR = "distill.error"
TAG_STUDY = "distill.study"
TAG_SEED_RERUN = "distill.seed_rerun"
TAG_NODE = "distill.node_id"
TAG_RAY_EXPERIMENT = "distill.ray_experiment"

STATUS_TERMINATED = "TERMINATED"
STATUS_ERROR = "ERROR"
STATUS_EARLY_STOPPED = "EARLY_STOPPED"
STATUSES = (STATUS_TERMINATED, STATUS_ERROR, STATUS_EARLY_STOPPED)
#: a trial an interrupted sweep left running or pending (``--resume`` continues it); its run is KILLED
STATUS_UNFINISHED = "UNFINISHED"
#: a run whose trial the resumed sweep's Ray state does not hold (the driver was killed before Ray
#: saved the trial): KILLED, its metrics kept, left out of every count, analysis and best trial
STATUS_LOST = "LOST"


def is_lost(run) -> bool:
    """Whether an MLflow run is a LOST trial run (see :data:`STATUS_LOST`)."""
    return run.data.tags.get(TAG_STATUS) == STATUS_LOST

#: model ids and sizes: params of every trial run (sizes are final metrics too)
MODEL_PARAMS = MODEL_KEYS
#: final metrics of a trial run (plus ``best_eval_<m>`` for each task metric); eval_score is last
FINAL_METRICS = ("best_eval_score", "train_seconds", "step_seconds", "step_ms", "peak_mem_mb", "student_params", "teacher_params",
                 "student_layers", "teacher_layers", "param_ratio", "speedup", "student_infer_seconds",
                 "teacher_infer_seconds", "latency_ms", "latency_ms_b32", "eval_score")

#: the final metrics a multi-objective sweep may trade off, and the direction of each
#: (:mod:`tuner.objectives`, :mod:`analysis.pareto`); the sweep's objectives are its parent run's
#: param :data:`PARAM_OBJECTIVES` (comma-separated)
OBJECTIVE_MODES = {"eval_score": "max", "student_params": "min", "latency_ms": "min", "latency_ms_b32": "min"}
PARAM_OBJECTIVES = "sweep.objectives"

ARTIFACT_STEP_LOGS = STEP_LOGS_FILE
ARTIFACT_SUMMARY = TRIAL_SUMMARY_FILE
ARTIFACT_STUDENT = "student"


# ---- a trial's ending: its status and final metrics ---------------------------------------------

def trial_status(last_result: dict | None, errored: bool) -> str:
    """TERMINATED (trained to the end), EARLY_STOPPED (stopped by the scheduler) or ERROR."""
    if errored:
        return STATUS_ERROR
    return STATUS_TERMINATED if (last_result or {}).get(FINAL) else STATUS_EARLY_STOPPED


def final_metrics(result: dict) -> dict[str, float]:
    """The final metrics of a trial from its last result (the final report, or the last
    evaluation of a trial stopped early or failed): ``best_eval_<m>``, ``test_<m>`` (a finished
    trial on a task with a labelled test split), :data:`FINAL_METRICS`."""
    if not result:
        return {}
    out = {k: v for k, v in result.items() if k.startswith(("best_eval_", "test_")) and is_number(v)}
    if "best_eval_score" in result:
        out["best_eval_score"] = result["best_eval_score"]
    for key in FINAL_METRICS:
        if key in result and is_number(result[key]) and key != "eval_score":
            out[key] = result[key]
    if "train_seconds" not in out and is_number(result.get("time_total_s")):
        out["train_seconds"] = result["time_total_s"]
    if "param_ratio" not in out and result.get("teacher_params") and result.get("student_params"):
        out["param_ratio"] = result["teacher_params"] / result["student_params"]
    if "best_eval_score" in out and not (isinstance(out["best_eval_score"], float)
                                         and math.isnan(out["best_eval_score"])):
        out["eval_score"] = out["best_eval_score"]
    return out


# ---- the store's address --------------------------------------------------------------------------

def resolve_tracking_uri(uri: str | None, workdir: str | None = None) -> str:
    """The tracking URI with absolute paths: default ``sqlite:///<workdir>/mlflow.db``; a
    relative ``sqlite:///x.db`` or a bare ``*.db`` path is made absolute (trials chdir)."""
    workdir = os.path.abspath(workdir or os.getcwd())
    if not uri:
        return "sqlite:///" + os.path.join(workdir, DEFAULT_DB_FILE)
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        return "sqlite:///" + os.path.abspath(os.path.join(workdir, path))
    scheme = urlparse(uri).scheme
    if not scheme:  # a path
        path = os.path.abspath(os.path.join(workdir, uri))
        return "sqlite:///" + path if path.endswith(".db") else Path(path).as_uri()
    return uri


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Fail fast (UserError) on a tracking URI the driver cannot use."""
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
                if resp.status != 200:
                    raise UserError(f"MLflow tracking server {uri} answered {resp.status} on /health")
        except UserError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise UserError(f"MLflow tracking server {uri} is unreachable ({reason}); start it with "
                            f"`mlflow server --host 0.0.0.0 --port PORT` or pass another --mlflow-uri") from None
    elif scheme == "sqlite":
        folder = os.path.dirname(uri[len("sqlite:///"):])
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create the MLflow database folder {folder!r}: {err}") from None
        if not os.access(folder, os.W_OK):
            raise UserError(f"the MLflow database folder {folder!r} is not writable")
    elif scheme not in ("file", "databricks", "postgresql", "mysql", "mssql") and "+" not in scheme:
        raise UserError(f"unsupported MLflow tracking URI {uri!r}; use sqlite:///PATH, http://HOST:PORT "
                        f"or a database URI")


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def search_all_runs(c, experiment_ids: list[str], filter_string: str = "") -> list:
    """Every run matching ``filter_string``, all pages, through the client of one store.
    (``mlflow.search_runs``, which pages and makes the DataFrame, reads only the process-wide
    tracking URI; a store here is named by its client.)"""
    from mlflow.store.tracking import SEARCH_MAX_RESULTS_DEFAULT
    from mlflow.utils import get_results_from_paginated_fn

    def page(count: int, token: str | None):
        return c.search_runs(experiment_ids, filter_string, max_results=count, page_token=token)

    return get_results_from_paginated_fn(page, SEARCH_MAX_RESULTS_DEFAULT)


# ---- what a run is called and what it is compared against ------------------------------------------

#: the experiment tag that opens an experiment in MLflow's model-training view (not the GenAI one)
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

#: short names of hyperparameters in trial run names (the papers' symbols)
SYMBOLS = {"student_lr": "λ", "teacher_lr": "μ", "alpha": "α", "beta": "β", "temperature": "T"}


def trial_run_name(method: str, sampled: dict[str, Any]) -> str:
    """``kd T=4 α=0.7 λ=3e-05``: the method and its sampled hyperparameters (symbols first, then
    the others by name; numbers to 2 significant digits), so a run table says what each trial was."""
    def fmt(value: Any) -> str:
        return f"{value:.2g}" if isinstance(value, float) else str(value)

    known = [k for k in ("temperature", "alpha", "beta", "student_lr", "teacher_lr") if k in sampled]
    others = sorted(k for k in sampled if k not in SYMBOLS)
    parts = [f"{SYMBOLS.get(k, k)}={fmt(sampled[k])}" for k in known + others]
    return " ".join([method, *parts])


def teacher_reference_metrics(teacher_path: str | None) -> dict[str, float]:
    """The fine-tuned teacher's dev (and test) metrics as ``teacher_eval_<m>`` / ``teacher_test_<m>``,
    from its cache folder's info file (empty when there is none: e.g. a ``--teacher-checkpoint``)."""
    from trainables.teacher_cache import read_info

    info = read_info(teacher_path)
    out = {}
    for key, value in {**info.get("dev_metrics", {}), **info.get("test_metrics", {})}.items():
        if is_number(value):
            out[f"teacher_{key}"] = float(value)
    return out
