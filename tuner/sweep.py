"""One sweep: a :class:`~tuner.spec.SweepSpec` in, a Ray Tune run with MLflow tracking, a summary dict out.

    from tuner.spec import SweepSpec
    from tuner.sweep import run_sweep
    summary = run_sweep(SweepSpec(method="metadistil", config={"task": "sst2", "max_train_samples": 2000},
                                  num_samples=8))

Two ways to choose trial configs:

* **search** (default): :class:`~ray.tune.search.optuna.OptunaSearch` (TPE, seeded by
  ``search_seed``) over the method's define-by-run space (:mod:`search_spaces`; ``space``
  overrides ranges, ``fixed`` pins values), behind a ``ConcurrencyLimiter``;
* **grid** (``grid={"alpha": [0, 0.5, 1]}``, or :func:`grid_sweep`): every combination once (times
  ``num_samples``), all other hyperparameters fixed: for studies (:mod:`tuner.study`).

Scheduler ``asha`` (default for search: ASHA on ``eval_score`` with one evaluation as the time
unit, grace period ``grace_period`` evaluations) or ``fifo`` (default for a grid). With
``objectives`` the search is multi-objective and FIFO (:mod:`tuner.objectives`), and the sweep
ends with the trials' Pareto front, whose highest ``eval_score`` is the best trial (:mod:`tuner.front`).

The steps, each in its own module: before any trial starts everything is checked (method, config,
space, task data: :func:`tuner.spec.prepare_sweep`; cluster resources, tracking store) and the
teacher is fine-tuned once, as a Ray task with the cores the trials will use
(:mod:`tuner.teacher_stage`), into the teacher cache under the storage path (shared storage on a
cluster), where every trial finds it. The sweep's record (``distill_sweep.json``: spec, parent
run, ...; :mod:`tuner.record`) is written next to Ray's experiment state, then the Tuner runs
(:mod:`tuner.ray_tuner`); :func:`run_sweep` with ``resume=True`` continues an interrupted sweep
with ``Tuner.restore``: finished trials stay finished, unfinished ones continue from their last
checkpoint, and their MLflow runs are reused. The summary (:mod:`tuner.summary`) says where the
wall time went (:mod:`tuner.timing`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any

from trainables.errors import UserError, check_writable_dir

from tuner import cluster, front as pareto, method_table, pbt, ray_tuner, summary as summaries, timing, tracking
from tuner.console import sweep_console
from tuner.mlflow_schema import PARAM_OBJECTIVES
from tuner.record import record_path, resume_command, resume_spec, write_record
from tuner.spec import PreparedSweep, SweepSpec, expected_trials, normalise, prepare_sweep
from tuner.teacher_stage import fine_tune_teachers

SWEEP_SUMMARY_FILE = "summary.json"
BEST_STUDENT_DIR = "best_student"


def grid_sweep(method: str, variable: str, values: list, *, config: dict[str, Any] | None = None,
               fixed: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
               repeats: int = 1, **settings: Any) -> dict:
    """Run ``method`` once (``repeats`` times) per value of one hyperparameter, everything else
    fixed; every run carries ``tags`` (e.g. ``{"distill.study": "alpha-sensitivity"}``).
    Returns the sweep summary (see :func:`run_sweep`)."""
    spec = SweepSpec(method=method, config=dict(config or {}), fixed=dict(fixed or {}),
                     grid={variable: list(values)}, num_samples=repeats, tags=dict(tags or {}),
                     **settings)
    return run_sweep(spec)


def run_sweep(spec: SweepSpec, *, resume: bool = False) -> dict[str, Any]:
    """Run (or with ``resume`` continue) a sweep; return its summary (also written to
    ``<storage>/<name>/summary.json`` and ``spec.output_json``)."""
    watch = timing.Stopwatch()
    record: dict[str, Any] = {}
    if resume:
        spec, record = resume_spec(spec)
    spec = normalise(spec)
    check_writable_dir(spec.storage_path, "--storage-path")
    if spec.output_json:
        check_writable_dir(os.path.dirname(spec.output_json), "--output-json's folder")
    if not resume and os.path.isfile(record_path(spec)):
        raise UserError(f"a sweep named {spec.name!r} already exists in {spec.storage_path}; "
                        f"continue it with --resume or choose another --name")
    prep = prepare_sweep(spec)
    tracking.check_tracking_uri(prep.tracking_uri)

    ray_started = time.perf_counter()
    with sweep_console(not spec.verbose), cluster.connect(spec.address) as conn:
        watch.mark("ray_start", ray_started)
        resources = cluster.check_trial_resources(spec.cpus_per_trial, spec.gpus_per_trial)
        packing = cluster.packing(spec.cpus_per_trial, spec.gpus_per_trial, spec.max_concurrent)
        if spec.verbose:
            print("\n".join(cluster.packing_lines(packing)), flush=True)
        experiment_id = tracking.ensure_experiment(prep.tracking_uri, spec.experiment)
        if record.get("parent_run_id"):
            parent_run_id = record["parent_run_id"]
            tracking.client(prep.tracking_uri).update_run(parent_run_id, status="RUNNING")
            if record.get("tracking_uri") != prep.tracking_uri:  # resumed with another --mlflow-uri
                record = {**{k: v for k, v in record.items() if k != "spec"}, "tracking_uri": prep.tracking_uri}
                write_record(spec, **record)
        else:
            with watch.stage("teacher_stage"):
                teacher_paths = fine_tune_teachers([prep.base], spec, resources)[0]
            parent_run_id = tracking.start_parent_run(
                prep.tracking_uri, experiment_id, spec.name, spec.method, str(prep.base["task"]),
                tags=spec.tags, params=_parent_params(prep, spec), teacher_paths=teacher_paths)
            record = {"parent_run_id": parent_run_id, "experiment_id": experiment_id,
                      "tracking_uri": prep.tracking_uri, "teacher_paths": teacher_paths,
                      "eval_steps": prep.eval_steps, "train_rows": prep.train_rows,
                      "space": prep.space.describe() if prep.space else None}
            write_record(spec, **record)
        try:
            with watch.stage("trials"):
                results = ray_tuner.fit(prep, spec, parent_run_id, experiment_id, restore=resume)
            trials = summaries.collect_trials(results)
            front = pareto.front_of(spec, prep, trials)  # a multi-objective sweep: best on its front
            exploits = pbt.attach_schedules(trials, spec.experiment_dir) if spec.scheduler_name == "pbt" else None
            best = front.best if front is not None else summaries.best_trial(trials)
            student_path = student_model = None
            if best is not None and best.get("_checkpoint") is not None:
                student_path = summaries.export_student(
                    best, os.path.join(spec.experiment_dir, BEST_STUDENT_DIR))
                if student_path:
                    from tuner.model_export import takes_pairs

                    student_model = tracking.log_best_student(
                        prep.tracking_uri, parent_run_id, student_path, pair=takes_pairs(prep.base),
                        register_as=spec.register_model)
            # Ray Tune returns normally after Ctrl-C: trials left running or pending, or samples
            # the search had not created yet, are what tells an interrupted sweep
            interrupted = (any(t["status"] == summaries.STATUS_UNFINISHED for t in trials)
                           or len(trials) < expected_trials(spec, prep))
            summaries.prune_engine_states(trials)
            seeds = None
            if spec.seeds and best is not None and not interrupted:
                with watch.stage("seed_reruns"):
                    seeds = _seed_reruns(prep, spec, best, parent_run_id, experiment_id, resources)
            summary = summaries.build_summary(
                spec, prep, trials, best, student_path=student_path, parent_run_id=parent_run_id,
                experiment_id=experiment_id, seeds=seeds, address=conn["address"],
                wall_seconds=watch.elapsed())
            if spec.methods:  # a multi-method sweep: each method's best, the winner
                summary.update(method_table.build(trials, spec.methods, best, summaries.best_trial))
            summary["interrupted"] = interrupted
            summary["pareto"] = pareto.save(front, spec, prep.tracking_uri, parent_run_id) if front else None
            if exploits is not None:  # population-based training: each trial's schedule
                summary["search"]["mode"] = "pbt"
                summary["pbt"] = pbt.summary_section(spec, pbt.mutated(spec.method, prep.space), exploits)
            summary["best_student_model"] = student_model  # the MLflow model URI (pyfunc)
            summary["packing"] = packing
            if spec.study_storage:
                from tuner import study_storage

                summary["optuna_study"] = {"name": spec.study_name, "storage": spec.study_storage,
                                           "complete_trials": study_storage.finished_trials(
                                               study_storage.open_storage(spec.study_storage), spec.study_name)}
            summary["time"] = timing.breakdown(watch, trials, packing["at_once"])
            summary["not_started"] = max(0, expected_trials(spec, prep) - len(trials))
            summary["resume_command"] = resume_command(spec) if interrupted else None
            if interrupted:
                print(f"sweep {spec.name} interrupted; continue it with: {summary['resume_command']}",
                      file=sys.stderr, flush=True)
            path = os.path.join(spec.experiment_dir, SWEEP_SUMMARY_FILE)
            summaries.write_json(summary, path)
            if spec.output_json:
                summaries.write_json(summary, spec.output_json)
            if spec.methods:
                method_table.record(summary, prep.tracking_uri, parent_run_id, spec.experiment_dir)
            tracking.finish_parent_run(prep.tracking_uri, parent_run_id, summaries.parent_metrics(summary), path,
                                       status="KILLED" if interrupted else "FINISHED")
        except BaseException:
            tracking.client(prep.tracking_uri).set_terminated(parent_run_id, status="KILLED")
            print(f"sweep {spec.name} stopped; continue it with: {resume_command(spec)}", file=sys.stderr,
                  flush=True)
            raise
    if spec.verbose:
        print(summaries.format_summary(summary))
        if summary.get("per_method"):
            print(method_table.format_table(summary))
        if summary.get("pareto"):
            print(pareto.format_front(summary["pareto"]))
    return summary


def _parent_params(prep: PreparedSweep, spec: SweepSpec) -> dict[str, Any]:
    params = {k: v for k, v in prep.base.items() if k not in (prep.space.searched() if prep.space else {})}
    params.update({
        "sweep.num_samples": spec.num_samples, "sweep.scheduler": spec.scheduler_name,
        "sweep.max_concurrent": spec.max_concurrent, "sweep.cpus_per_trial": spec.cpus_per_trial,
        "sweep.gpus_per_trial": spec.gpus_per_trial, "sweep.search_seed": spec.search_seed,
        "sweep.grid": json.dumps(prep.grid) if prep.grid else "None",
        PARAM_OBJECTIVES: ",".join(spec.objectives) if spec.objectives else "None",
        "sweep.students": ",".join(spec.students) if spec.students else "None",
        "sweep.space": json.dumps(dict(prep.space.describe())) if prep.space else "None",
        "sweep.budget": spec.budget,
    })
    if spec.methods:  # a multi-method sweep
        params["sweep.methods"] = ",".join(spec.methods)
    return params


def _seed_reruns(prep: PreparedSweep, spec: SweepSpec, best: dict, parent_run_id: str, experiment_id: str,
                 resources: dict[str, float]) -> dict[str, Any]:
    """Re-run the best config with ``spec.seeds`` new seeds (a grid over ``seed``)."""
    best_config = {**prep.base, **best["config"]}
    first = int(best_config.get("seed", 42))
    seeds = [first + i for i in range(1, spec.seeds + 1)]
    rerun = dataclasses.replace(spec, name=f"{spec.name}-seeds", grid={"seed": seeds}, num_samples=1,
                                method=best_config.get("method", spec.method), methods=None,
                                scheduler="fifo", seeds=0, space=None,
                                fixed={k: v for k, v in best["config"].items() if k != "seed"})
    base = {k: v for k, v in best_config.items() if k != "seed"}
    rerun_prep = dataclasses.replace(prep, spec=rerun, base={**base, "seed": first}, space=None,
                                     grid={"seed": seeds})
    fine_tune_teachers([{**base, "seed": s} for s in seeds], rerun, resources)
    results = ray_tuner.fit(rerun_prep, rerun, parent_run_id, experiment_id,
                   tags={tracking.TAG_SEED_RERUN: "true"}, restore=True, sweep_name=spec.name)
    trials = summaries.collect_trials(results)
    summaries.prune_engine_states(trials)
    scores = [t["metrics"]["best_eval_score"] for t in trials
              if t["status"] == tracking.STATUS_TERMINATED and "best_eval_score" in t["metrics"]]
    return summaries.seed_stats(seeds, scores, trials)
