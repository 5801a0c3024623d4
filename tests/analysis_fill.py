"""Filling a real SQLite MLflow store with trial runs in the sweeps' schema, for the analysis tests.

Every number is chosen by the test, so the tables and plots can be checked exactly.
"""

from __future__ import annotations

import os
import tempfile
import time

import pandas as pd

from analysis import store as S
from store_template import empty_store
from trainables.config import DistillConfig


class Filler:
    def __init__(self, path: str, experiment: str = S.DEFAULT_EXPERIMENT):
        from mlflow.tracking import MlflowClient

        self.uri = empty_store(path)  # a copy of the session's empty store (no migrations)
        self.experiment = experiment
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.sweeps: dict[str, str] = {}
        self._clock = int(time.time() * 1000)

    def _parent(self, sweep: str, method: str, task: str) -> str:
        if sweep not in self.sweeps:
            run = self.client.create_run(self.exp_id, run_name=sweep, tags={
                S.TAG_ROLE: S.ROLE_SWEEP, S.TAG_SWEEP: sweep, S.TAG_METHOD: method, S.TAG_TASK: task})
            self.sweeps[sweep] = run.info.run_id
        return self.sweeps[sweep]

    def trial(self, method: str, score: float | None, *, task: str = "sst2", sweep: str = "sweep-a",
              status: str = "TERMINATED", study: str | None = None, seed_rerun: bool = False,
              metrics: dict | None = None, history: dict | None = None, step_logs: pd.DataFrame | None = None,
              student_params: int = 11_000_000, teacher_params: int = 22_000_000,
              **config) -> str:
        """One trial run: params of ``DistillConfig(method, task, **config)``, step metrics
        ``history`` ({key: [(step, value), ...]}), then final metrics ``best_eval_score`` /
        ``eval_score`` / ``best_eval_<primary>`` = ``score`` plus ``metrics`` at the last step, and
        an optional step_logs.csv."""
        from mlflow.entities import Metric, Param, RunTag

        primary = {"sst2": "accuracy", "cola": "mcc"}.get(task, "accuracy")
        cfg = DistillConfig(method=method, task=task, **config)
        parent = self._parent(sweep, method, task)
        self._clock += 1000
        tags = {S.TAG_PARENT: parent, S.TAG_ROLE: S.ROLE_TRIAL, S.TAG_SWEEP: sweep,
                S.TAG_TRIAL_ID: f"t{self._clock}", S.TAG_METHOD: method, S.TAG_TASK: task,
                S.TAG_STATUS: status}
        if study:
            tags[S.TAG_STUDY] = study
        if seed_rerun:
            tags[S.TAG_SEED_RERUN] = "true"
        if status == "ERROR":
            tags[S.TAG_ERROR] = "RuntimeError: boom"
        run = self.client.create_run(self.exp_id, start_time=self._clock, tags=tags,
                                     run_name=f"{method}-{self._clock}")
        rid = run.info.run_id
        params = {k: "None" if v is None else str(v) for k, v in cfg.to_dict().items()}
        params.update(teacher_id="tiny-teacher", student_id="tiny-teacher[:3]",
                      teacher_params=str(teacher_params), student_params=str(student_params),
                      teacher_layers="6", student_layers=str(cfg.student_layers))
        final = {}
        if score is not None:
            final = {"best_eval_score": score, "eval_score": score, f"best_eval_{primary}": score,
                     f"eval_{primary}": score, "student_params": student_params,
                     "teacher_params": teacher_params, "param_ratio": teacher_params / student_params}
        final.update(metrics or {})
        # as the sweeps log them: evaluations first, then the final metrics at the last step; the
        # evaluation curves (eval_*) are the evaluations' own, never overwritten by a best value
        final = {k: v for k, v in final.items() if not (k.startswith("eval_") and k in (history or {}))}
        step_metrics = []
        for key, points in (history or {}).items():
            step_metrics += [Metric(key, float(v), self._clock + i, int(s)) for i, (s, v) in enumerate(points)]
        last = max((int(s) for points in (history or {}).values() for s, _ in points), default=100)
        step_metrics += [Metric(k, float(v), self._clock + 900, last) for k, v in final.items()]
        self.client.log_batch(rid, metrics=step_metrics, params=[Param(k, v) for k, v in params.items()],
                              tags=[RunTag("mlflow.runName", run.info.run_name)])
        if step_logs is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, S.ARTIFACT_STEP_LOGS)
                step_logs.to_csv(path, index=False)
                self.client.log_artifact(rid, path)
        self.client.set_terminated(rid, "FAILED" if status == "ERROR" else "FINISHED",
                                   end_time=self._clock + 500)
        return rid
