"""MLflow tracking of sweeps: the experiment, the parent run, one run per trial.

All logging happens on the driver, through :class:`MlflowTrialLogger` (a Ray Tune callback), so:
trials need no access to the tracking store (only the driver does: SQLite works unchanged with
trials on other nodes), a single process writes to SQLite, and the driver sees every ending of
a trial (finished, stopped early by the scheduler, raised, or killed with its worker).

The schema's names (what ``analysis`` reads) and the store's address are in the Ray-free
:mod:`tuner.mlflow_schema`, the store's operations (experiment, parent run, batches) in
:mod:`tuner.mlflow_store`; both are importable from here too.

A resumed sweep finds each trial's run again by its tags (sweep, trial id) instead of creating a
second one, and does not log a step twice. A run of a trial the resumed sweep's Ray state does not
hold (the driver was killed after the trial started, before Ray saved it) is marked LOST before any
trial starts: KILLED, its metrics kept, and left out of counts, analysis and the best trial.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ray import tune

from trainables.trainable import EVALUATION, FINAL, LAST_EVALUATION, MODEL_KEYS, NODE, is_number
from tuner.mlflow_store import (config_params, ensure_experiment, finish_parent_run,  # noqa: F401
                                find_runs, log_best_student, log_metrics, log_params, param_value,
                                start_parent_run, store_lock)
from tuner.mlflow_schema import (ARTIFACT_STEP_LOGS, ARTIFACT_STUDENT, ARTIFACT_SUMMARY,  # noqa: F401
                                 DEFAULT_DB_FILE, DEFAULT_EXPERIMENT, FINAL_METRICS, MODEL_PARAMS,
                                 ROLE_SWEEP, ROLE_TRIAL, STATUS_EARLY_STOPPED, STATUS_ERROR,
                                 STATUS_LOST, STATUS_TERMINATED, STATUS_UNFINISHED, STATUSES, TAG_ERROR,
                                 TAG_METHOD, TAG_NODE, TAG_PARENT, TAG_RAY_EXPERIMENT, TAG_ROLE,
                                 TAG_SEED_RERUN, TAG_STATUS, TAG_STUDY,
                                 TAG_SWEEP, TAG_TASK, TAG_TRIAL_ID, check_tracking_uri, client,
                                 final_metrics, is_lost, resolve_tracking_uri, search_all_runs, trial_status,
                                 EXPERIMENT_KIND, TAG_EXPERIMENT_KIND, teacher_reference_metrics,
                                 trial_run_name)

#: result keys that are bookkeeping, not metrics (Ray's own plus the trainable's)
_NOT_STEP_METRICS = set(getattr(tune.result, "AUTO_RESULT_KEYS", ())) | {
    "done", "training_iteration", "step", "epoch", EVALUATION, "evaluations", FINAL, *MODEL_KEYS, LAST_EVALUATION,
    "time_this_iter_s", "time_total_s", "timestamp", "pid", "iterations_since_restore",
    "time_since_restore", "timesteps_since_restore", "timesteps_total", "episodes_total",
    # constants of the trial (in every report, logged once as final metrics)
    "speedup", "student_infer_seconds", "teacher_infer_seconds", "latency_ms", "latency_ms_b32"}


def _error_reason(trial) -> str:
    """``ExceptionType: message`` of a failed trial (the original exception inside Ray's wrapper).
    The driver's own copy of the error files is read first: at ``on_trial_error`` time the
    copy in storage may not be written yet."""
    import cloudpickle

    err = None
    for path, reader in ((trial.pickled_error_file, None), (None, trial.get_pickled_error)):
        try:
            if path and os.path.isfile(path):
                with open(path, "rb") as fh:
                    err = cloudpickle.load(fh)
            elif reader is not None:
                err = reader()
        except Exception:
            err = None
        if err is not None:
            cause = getattr(err, "cause", None) or err
            return f"{type(cause).__name__}: {cause}".strip()
    text = ""
    try:
        if trial.error_file and os.path.isfile(trial.error_file):
            with open(trial.error_file) as fh:
                text = fh.read()
        else:
            text = trial.get_error() or ""
    except Exception:
        pass
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "the trial failed (no error recorded)"


class MlflowTrialLogger(tune.Callback):
    """Ray Tune callback: one MLflow child run per trial under the sweep's parent run.

    Stateless across driver restarts: runs are found again by tags, the last logged step by the
    run's ``eval_score`` history. Tracking failures are reported on stderr and never stop a sweep.
    ``ray_experiment`` names the Ray Tune experiment the trials belong to (default ``sweep``; the
    seed re-runs of a sweep are another one): the runs it holds are the ones checked for LOST.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, sweep: str,
                 method: str, task: str, base_config: dict[str, Any],
                 tags: dict[str, str] | None = None, ray_experiment: str | None = None):
        self.tracking_uri, self.experiment_id, self.parent_run_id = tracking_uri, experiment_id, parent_run_id
        self.sweep, self.method, self.task = sweep, method, task
        self.ray_experiment = ray_experiment or sweep
        self.base_config = dict(base_config)
        from tuner import provenance

        self.tags = {**provenance.tags(), **(tags or {})}
        self._reset()

    def _reset(self) -> None:
        self._client = None
        self._teacher_reference: dict[str, float] | None = None
        self._runs: dict[str, str] = {}         # trial id -> run id
        self._last_step: dict[str, int] = {}    # trial id -> last step logged
        self._model_logged: set[str] = set()
        self._ended: set[str] = set()           # trials whose end (complete / error) was logged
        self._lost_checked = False               # the runs Ray did not restore are marked LOST

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in ("_client", "_teacher_reference", "_runs", "_last_step", "_model_logged", "_ended",
                    "_lost_checked"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()

    @property
    def client(self):
        if self._client is None:
            self._client = client(self.tracking_uri)
        return self._client

    @property
    def teacher_reference(self) -> dict[str, float]:
        """The fine-tuned teacher's metrics the parent run holds (read once)."""
        if self._teacher_reference is None:
            metrics = self.client.get_run(self.parent_run_id).data.metrics
            self._teacher_reference = {k: v for k, v in metrics.items()
                                       if k.startswith(("teacher_eval_", "teacher_test_"))}
        return self._teacher_reference

    # ---- runs -------------------------------------------------------------------------------
    def _find_run(self, tid: str) -> str | None:
        filt = (f"tags.`{TAG_SWEEP}` = '{self.sweep}' and tags.`{TAG_TRIAL_ID}` = '{tid}' "
                f"and tags.`{TAG_PARENT}` = '{self.parent_run_id}'")
        found = [r for r in self.client.search_runs([self.experiment_id], filter_string=filt, max_results=50)
                 if not is_lost(r)]  # a grid sweep may give a lost trial's id to its new sample
        return found[0].info.run_id if found else None

    def run_id(self, trial) -> str:
        tid = trial.trial_id
        if tid in self._runs:
            return self._runs[tid]
        run_id = self._find_run(tid)
        if run_id is not None:  # a resumed sweep: continue the trial's run
            history = self.client.get_metric_history(run_id, "eval_score")
            self._last_step[tid] = max((m.step for m in history), default=-1)
            self.client.update_run(run_id, status="RUNNING")
        else:
            # a multi-method sweep's trial carries its own method in its config
            method = trial.config.get("method", self.method)
            sampled = {k: v for k, v in trial.config.items() if k != "method"}
            config = {**self.base_config, **trial.config, "method": method}
            run = self.client.create_run(self.experiment_id, run_name=trial_run_name(method, sampled), tags={
                TAG_PARENT: self.parent_run_id, TAG_ROLE: ROLE_TRIAL, TAG_SWEEP: self.sweep,
                TAG_TRIAL_ID: tid, TAG_RAY_EXPERIMENT: self.ray_experiment, TAG_METHOD: method,
                TAG_TASK: self.task, **self.tags})
            run_id = run.info.run_id
            self._runs[tid], self._last_step[tid] = run_id, -1  # known before anything else can fail
            log_params(self.client, run_id, config_params(config, method))
            if self.teacher_reference:  # the fine-tuned teacher: the reference line of this run
                log_metrics(self.client, run_id, self.teacher_reference, 0)
        self._runs[tid] = run_id
        return run_id

    def _safely(self, what: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as err:  # tracking must not take the sweep down
            print(f"warning: MLflow logging ({what}) failed: {type(err).__name__}: {err}", file=sys.stderr)

    # ---- Tune callback hooks ----------------------------------------------------------------
    def on_step_begin(self, iteration, trials, **info):
        """The first step, before any trial starts: ``trials`` are the ones Ray restored (none in
        a new sweep); the runs of other trials are marked LOST."""
        if not self._lost_checked:
            self._lost_checked = True
            self._safely("lost runs", self._mark_lost, {t.trial_id for t in trials})

    def on_trial_start(self, iteration, trials, trial, **info):
        self._safely("trial start", self.run_id, trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._safely("result", self._log_result, trial, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._safely("trial end", self._finish, trial, False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._safely("trial error", self._finish, trial, True)

    def on_experiment_end(self, trials, **info):
        """Called when Tune stops, also after Ctrl-C. A trial whose end this callback did not
        see (Ray stops the trials it was running after Ctrl-C and marks them TERMINATED in memory,
        without ``on_trial_complete``; its saved state says RUNNING and ``--resume`` continues it)
        has its run ended as KILLED with ``distill.status=UNFINISHED``, not left RUNNING. (A
        restored sweep with nothing left to run ends without a step: its LOST runs are marked here.)"""
        self.on_step_begin(-1, trials)
        for trial in trials:
            if trial.trial_id not in self._ended:
                self._safely("unfinished trial", self._mark_unfinished, trial)

    def _mark_lost(self, known: set[str]) -> None:
        """Mark LOST the runs of this Ray experiment whose trial Ray does not know: a driver killed
        after a trial started (its run created, results maybe logged, even its end) but before Ray
        saved that trial in the experiment state leaves such a run, and the resumed sweep samples
        the trial anew. The run ends as KILLED with ``distill.status=LOST``; nothing is deleted."""
        for run in find_runs(self.tracking_uri, self.experiment_id, self.sweep):
            tags = run.data.tags
            if (tags.get(TAG_RAY_EXPERIMENT) != self.ray_experiment or tags.get(TAG_PARENT) != self.parent_run_id
                    or tags.get(TAG_TRIAL_ID) in known):
                continue
            self.client.set_tag(run.info.run_id, TAG_STATUS, STATUS_LOST)
            if run.info.status != "KILLED":
                self.client.set_terminated(run.info.run_id, status="KILLED")
            print(f"warning: trial {tags.get(TAG_TRIAL_ID)} of sweep {self.sweep} is not in Ray's saved "
                  f"state (the driver stopped before Ray saved it); its MLflow run {run.info.run_id} is "
                  f"marked {STATUS_LOST} and left out of the results", file=sys.stderr, flush=True)

    def _mark_unfinished(self, trial) -> None:
        run_id = self._runs.get(trial.trial_id) or self._find_run(trial.trial_id)
        if run_id is None:  # it never started: no run
            return
        if self.client.get_run(run_id).info.status == "RUNNING":
            self.client.set_tag(run_id, TAG_STATUS, STATUS_UNFINISHED)
            self.client.set_terminated(run_id, status="KILLED")

    # ---- logging ----------------------------------------------------------------------------
    def _log_model(self, trial, run_id: str, result: dict) -> None:
        if trial.trial_id in self._model_logged:
            return
        model = {k: result[k] for k in MODEL_PARAMS if k in result}
        if model:
            log_params(self.client, run_id, model)
            self._model_logged.add(trial.trial_id)
        if result.get(NODE):
            self.client.set_tag(run_id, TAG_NODE, result[NODE])

    def _log_result(self, trial, result: dict) -> None:
        run_id = self.run_id(trial)
        self._log_model(trial, run_id, result)
        if result.get(FINAL) or EVALUATION not in result:
            return  # final metrics are logged when the trial completes
        step = int(result.get("step", result.get("training_iteration", 0)))
        if step <= self._last_step.get(trial.trial_id, -1):
            return  # already logged before the driver restarted
        metrics = {k: v for k, v in result.items()
                   if is_number(v) and k not in _NOT_STEP_METRICS
                   and not (k.startswith("best_eval_") and k != "best_eval_score")}
        log_metrics(self.client, run_id, metrics, step)
        self._last_step[trial.trial_id] = step

    def _finish(self, trial, errored: bool) -> None:
        run_id = self.run_id(trial)
        result = dict(trial.last_result or {})
        if result:
            self._log_model(trial, run_id, result)
        status = trial_status(result, errored)
        final = final_metrics(result)
        if final:
            # the eval_score curve stays the evaluations' own; the best is best_eval_score
            step = int(result.get("step", 0))
            log_metrics(self.client, run_id, {k: v for k, v in final.items() if k != "eval_score"}, step)
        self._log_artifacts(trial, run_id)
        self.client.set_tag(run_id, TAG_STATUS, status)
        if errored:
            self.client.set_tag(run_id, TAG_ERROR, _error_reason(trial)[:5000])
        self.client.set_terminated(run_id, status="FAILED" if errored else "FINISHED")
        self._ended.add(trial.trial_id)

    def _log_artifacts(self, trial, run_id: str) -> None:
        checkpoint = trial.checkpoint
        if checkpoint is None:
            return
        with checkpoint.as_directory() as directory:
            for name in (ARTIFACT_STEP_LOGS, ARTIFACT_SUMMARY):
                path = os.path.join(directory, name)
                if os.path.isfile(path):
                    self.client.log_artifact(run_id, path)
