"""What the sweeps recorded in MLflow, as pandas DataFrames.

:meth:`Store.runs` returns one row per *trial* run (``distill.role=trial``) with

* ``run_id``, ``run_name``, ``run_status`` (MLflow's FINISHED/FAILED/RUNNING/KILLED), ``start_time``,
  ``end_time`` (UTC timestamps);
* the ``distill.*`` tags as plain columns (:data:`TAG_COLUMNS`: ``sweep``, ``trial_id``,
  ``trial_status``, ``error``, ``study``, ``seed_rerun``, ``parent_run_id``, ...);
* every param under its own name (the :class:`~trainables.config.DistillConfig` field names), typed
  like the config field (``Int64``/``float``/``boolean``/text, ``"None"`` -> missing); other params
  (``teacher_params``, ``student_params``, ...) are numeric when every value parses as a number;
* every final metric (MLflow's latest value) under its own name (``best_eval_score``,
  ``eval_accuracy``, ``train_seconds``, ``speedup``, ...). A name logged as both a param and a metric
  (``student_params``) keeps the param's value where there is one.

Failed trials (``distill.status=ERROR`` or MLflow status FAILED) are left out unless asked for;
LOST runs (``distill.status=LOST``: a trial a killed driver started that Ray's saved state did not
hold, so the resumed sweep ran its sample again) are always left out.
Every way of finding nothing (no store file, no experiment, no matching runs) is a
:class:`~trainables.errors.UserError` that names what was asked for and what the store does hold.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterable

import pandas as pd

from analysis.runs_frame import PARAM_TYPES, TAG_COLUMNS, runs_frame, typed_column  # noqa: F401
from trainables.config import HPARAMS, DistillConfig
from trainables.errors import UserError
from tuner.mlflow_schema import (ARTIFACT_STEP_LOGS, DEFAULT_EXPERIMENT, ROLE_SWEEP, ROLE_TRIAL,  # noqa: F401
                                 STATUS_ERROR, TAG_ERROR, TAG_METHOD, TAG_PARENT, TAG_ROLE, TAG_SEED_RERUN,
                                 TAG_STATUS, TAG_STUDY, TAG_SWEEP, TAG_TASK, TAG_TRIAL_ID,
                                 check_tracking_uri, is_lost, resolve_tracking_uri, search_all_runs)

#: the final metric holding a run's best dev score, in order of preference
SCORE_COLUMNS = ("best_eval_score", "eval_score")

_PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def normalise_uri(uri: str | None) -> str:
    """The tracking URI as the sweeps resolve it (default ``sqlite:///<cwd>/mlflow.db``; a bare
    ``*.db`` path becomes ``sqlite:///<abs path>``, another bare path a ``file://`` URI)."""
    return resolve_tracking_uri(uri)


def _local_store_path(uri: str) -> str | None:
    """The file or folder a local tracking URI points at (None for servers and databases)."""
    if uri.startswith("sqlite:///"):
        return uri[len("sqlite:///"):]
    if uri.startswith("file://"):
        return uri[len("file://"):]
    return None


def score_column(df: pd.DataFrame) -> str:
    """The column holding each run's best dev score of the task's primary metric."""
    for name in SCORE_COLUMNS:
        if name in df.columns and df[name].notna().any():
            return name
    raise UserError("the runs have no eval_score metric (best_eval_score / eval_score): were they "
                    "logged by a distill-tune sweep?")


def metric_column(df: pd.DataFrame, metric: str) -> str | None:
    """Column of the best dev value of ``metric`` (``best_eval_<m>``, else ``eval_<m>``)."""
    for name in (f"best_eval_{metric}", f"eval_{metric}"):
        if name in df.columns and df[name].notna().any():
            return name
    return None


def task_metrics(task: str | None, df: pd.DataFrame) -> tuple[str, list[str]]:
    """(primary metric, all dev metrics) of ``task``: from the task table when it is a table task,
    else discovered from the ``best_eval_*`` / ``eval_*`` columns of ``df``."""
    from trainables.tasks import TASKS

    spec = TASKS.get((task or "").lower())
    if spec is not None:
        metrics = [spec.primary_metric] + [m for m in spec.metrics if m != spec.primary_metric]
        return spec.primary_metric, metrics
    settings = {f.name for f in dataclasses.fields(DistillConfig)}  # eval_steps, eval_teacher: settings
    found = []
    for col in df.columns:
        for prefix in ("best_eval_", "eval_"):
            if col.startswith(prefix) and col not in settings:
                name = col[len(prefix):]
                if name not in ("score", "loss") and name not in found:
                    found.append(name)
    primary = _primary_of(df, found)
    return (primary, [primary, *[m for m in found if m != primary]]) if primary else ("score", ["score", *found])


def _primary_of(df: pd.DataFrame, metrics: list[str]) -> str | None:
    """The metric whose best value is every run's primary score (``best_eval_score``): a
    bring-your-own task's primary metric, named (None when no metric matches on every run)."""
    if "best_eval_score" not in df or df["best_eval_score"].isna().all():
        return None
    score = df["best_eval_score"].astype(float)
    for m in metrics:
        col = f"best_eval_{m}"
        if col in df and ((df[col].astype(float) - score).abs() < 1e-9).where(score.notna(), True).all():
            return m
    return None


# ---- the store ----------------------------------------------------------------------------------

def _folder_name(task: str) -> str:
    return os.path.basename(os.path.normpath(str(task))).lower()


def _listing(values: Iterable[object]) -> str:
    items = sorted({str(v) for v in values if v is not None and not pd.isna(v) and str(v) != ""})
    return ", ".join(items) if items else "none"


class Store:
    """One MLflow experiment at one tracking URI, read only: nothing is created (a missing SQLite
    file or experiment is a UserError, not a new empty store). The experiment is looked up on first
    use, so :meth:`run` works whatever ``experiment`` says."""

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = normalise_uri(tracking_uri)
        self.experiment = experiment or DEFAULT_EXPERIMENT
        path = _local_store_path(self.uri)
        if path is None:  # a server or database: it must answer now (MLflow would retry for minutes)
            check_tracking_uri(self.uri)
        elif not os.path.exists(path):
            raise UserError(f"no MLflow store at {self.uri} ({path} does not exist); pass --mlflow-uri "
                            "with the tracking URI the sweeps logged to")
        self.client = MlflowClient(tracking_uri=self.uri)
        self._experiment_id: str | None = None

    @property
    def experiment_id(self) -> str:
        """The experiment's id; a UserError listing the experiments there when it does not exist."""
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                names = [e.name for e in self.client.search_experiments()]
                raise UserError(f"no experiment {self.experiment!r} at {self.uri}; experiments there: "
                                f"{_listing(names)}")
            self._experiment_id = exp.experiment_id
        return self._experiment_id

    # ---- runs --------------------------------------------------------------------------------
    def _search(self, filter_string: str) -> list:
        return search_all_runs(self.client, [self.experiment_id], filter_string)

    def all_runs(self, role: str | None = ROLE_TRIAL) -> pd.DataFrame:
        """Every run of the experiment with ``distill.role=role`` (any role when None), LOST
        runs left out."""
        flt = f"tags.\"{TAG_ROLE}\" = '{role}'" if role else ""
        return runs_frame([run for run in self._search(flt) if not is_lost(run)])

    def runs(self, task: str | None = None, *, method: str | Iterable[str] | None = None,
             study: str | None = None, exclude_studies: bool = False, sweep: str | None = None,
             include_failed: bool = False, role: str | None = ROLE_TRIAL) -> pd.DataFrame:
        """Trial runs matching every given filter; a UserError naming what exists when none do."""
        df = self.all_runs(role)
        where = f"in experiment {self.experiment!r} at {self.uri}"
        if df.empty:
            raise UserError(f"no {role or ''} runs {where}".replace("  ", " "))
        if task is not None:
            # a bring-your-own task recorded as a path is also found by its folder name
            recorded = df["task"].astype(str)
            hit = (recorded.str.lower() == task.lower()) | (recorded.map(_folder_name) == _folder_name(task))
            if not hit.any():
                raise UserError(f"no runs for task {task!r} {where} (tasks with runs: "
                                f"{_listing(df['task'])})")
            df = df[hit]
        what = f"for task {task!r} " if task is not None else ""
        if method is not None:
            methods = [method] if isinstance(method, str) else list(method)
            hit = df["method"].isin(methods)
            if not hit.any():
                raise UserError(f"no runs of method {', '.join(methods)} {what}{where} (methods with "
                                f"runs: {_listing(df['method'])})")
            df = df[hit]
            what += f"of method {', '.join(methods)} "
        if study is not None:
            hit = df["study"] == study if "study" in df else pd.Series(False, index=df.index)
            if not hit.any():
                recorded = df["study"] if "study" in df else []
                raise UserError(f"no runs of study {study!r} {what}{where} (studies with runs: "
                                f"{_listing(recorded)}); run the study without --from-mlflow first")
            df = df[hit]
        elif exclude_studies and "study" in df:
            df = df[df["study"].isna()]
            if df.empty:
                raise UserError(f"only sensitivity-study runs {what}{where}")
        if sweep is not None:
            hit = df["sweep"] == sweep if "sweep" in df else pd.Series(False, index=df.index)
            if not hit.any():
                raise UserError(f"no runs of sweep {sweep!r} {what}{where} (sweeps: "
                                f"{_listing(df.get('sweep', []))})")
            df = df[hit]
        if not include_failed:
            failed = df["run_status"].eq("FAILED")
            if "trial_status" in df:
                failed |= df["trial_status"].eq(STATUS_ERROR).fillna(False).astype(bool)
            kept = df[~failed]
            if kept.empty:
                errors = _listing(df.get("error", pd.Series(dtype=object)).dropna().head(3))
                raise UserError(f"all {len(df)} runs {what}{where} failed (errors: {errors})")
            df = kept
        return df.reset_index(drop=True)

    def run(self, run_id: str) -> pd.Series:
        """One run (any role) as a row, by id."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            raise UserError(f"no run with id {run_id!r} at {self.uri}") from None
        return runs_frame([run]).iloc[0]

    # ---- curves ------------------------------------------------------------------------------
    def metric_history(self, run_id: str, keys: Iterable[str]) -> pd.DataFrame:
        """Step metrics of one run, wide: a ``step`` column and one column per key that was logged.
        A key logged twice at one step keeps its first value: the sweeps log the final
        ``eval_score`` (= the best) again at the last step, after that step's evaluation."""
        frames = []
        for key in keys:
            hist = self.client.get_metric_history(run_id, key)
            if not hist:
                continue
            h = pd.DataFrame([(m.step, m.timestamp, m.value) for m in hist],
                             columns=["step", "timestamp", key])
            h = h.sort_values(["step", "timestamp"]).drop_duplicates("step", keep="first")
            frames.append(h.drop(columns="timestamp").set_index("step"))
        if not frames:
            return pd.DataFrame(columns=["step"])
        return pd.concat(frames, axis=1).sort_index().reset_index()

    def artifact_csv(self, run_id: str, path: str = ARTIFACT_STEP_LOGS) -> pd.DataFrame | None:
        """A CSV artifact of a run as a DataFrame, or None when the run has no such artifact."""
        import mlflow.artifacts

        names = {a.path for a in self.client.list_artifacts(run_id, os.path.dirname(path) or None)}
        if path not in names:
            return None
        quiet = os.environ.get(_PROGRESS_ENV)
        os.environ[_PROGRESS_ENV] = "false"
        try:
            with tempfile.TemporaryDirectory() as tmp:
                local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path,
                                                            dst_path=tmp, tracking_uri=self.uri)
                return pd.read_csv(local)
        finally:
            if quiet is None:
                os.environ.pop(_PROGRESS_ENV, None)
            else:
                os.environ[_PROGRESS_ENV] = quiet


# ---- best configuration -------------------------------------------------------------------------

def best_run(df: pd.DataFrame) -> pd.Series:
    """The row with the highest dev score (every primary metric here is higher-is-better)."""
    col = score_column(df)
    return df.loc[df[col].idxmax()]


def hparams_of(row: pd.Series) -> dict:
    """The hyperparameters recorded for a run, as plain Python values (missing ones left out,
    ``None``-valued optional ones kept as None)."""
    out = {}
    for name in HPARAMS:
        if name not in row.index:
            continue
        value = row[name]
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            value = None
        elif hasattr(value, "item"):
            value = value.item()
        out[name] = value
    return out


def best_hparams(store: Store, task: str, method: str, *, exclude_studies: bool = True) -> tuple[dict, str] | None:
    """Hyperparameters of the best recorded trial of ``method`` on ``task`` and its run id, or None
    when the store has no (successful) trial of it. Sensitivity-study runs are not candidates unless
    ``exclude_studies`` is False."""
    try:
        df = store.runs(task, method=method, exclude_studies=exclude_studies)
        row = best_run(df)
    except UserError:
        return None
    return hparams_of(row), row["run_id"]
