"""The Ray Tune function trainable: one trial = one config through :func:`trainables.experiment.run`.

This is the only module of ``trainables`` that imports Ray. :func:`make_trainable` returns the
function Tune runs for every trial of a method; the trial's ``config`` (the sampled and fixed
hyperparameters) is laid over ``base`` (every other :class:`DistillConfig` field, absolute paths).

At each evaluation the trial calls ``ray.tune.report`` with

* the engine's metrics (``eval_score``, ``eval_<m>``, ``train_loss``, ``train_<x>``, ``step``,
  ``epoch``, ``best_eval_score``, ...; numeric values only);
* ``evaluation`` (1, 2, ...: the scheduler's time axis), ``best_eval_<m>`` (the best evaluation's
  values so far), the model ids and sizes, the device and the GPU ids Ray gave the trial
  (:data:`MODEL_KEYS`) and ``node_id``;
* a checkpoint (every ``checkpoint_every`` evaluations) holding the engine state, the per-step
  logs so far (``step_logs.csv``) and this wrapper's state;
* in a population-based training sweep, ``hp/<name>`` (the current hyperparameters),
  ``pbt_exploit``/``pbt_exploited_from`` after a clone, ``pbt_last_evaluation`` (see
  :mod:`tuner.pbt`).

After training it reports once more: ``final_report = 1``, ``eval_score`` and ``best_eval_<m>``
of the selected student (``select``: the best dev evaluation, by default, or the last one),
``test_<m>`` where the task has a labelled test split, ``train_seconds``, sizes, ``param_ratio``, ``speedup``,
inference times, the student's latency (``latency_ms`` at batch 1, ``latency_ms_b32``; also in every
evaluation's report); with a final checkpoint holding the best student (``student/``, saved with its
tokenizer, ready to deploy), ``summary.json`` and ``step_logs.csv``. The final report carries no
``evaluation`` key, so ASHA does not treat it as another rung. A trial restarted from a final
checkpoint (a resumed sweep whose driver died after the trial ended) re-reports its final result
without training again.

A trial that raises (including :class:`~trainables.engine.NonFiniteLossError` on a NaN/inf loss)
fails in Ray with that exception; the sweep records it and goes on.

A trial restarted from a checkpoint (``--resume``, or Ray's retry after a failure) first checks it:
a checkpoint whose ``engine_state.pt`` or ``trial_state.json`` cannot be read back (missing,
truncated by a full disk or a kill mid-write) is skipped with a warning naming the file, and the
trial continues from the newest older checkpoint Ray kept beside it (``checkpoint_<n>`` folders
of the trial; every file read from that one folder, never a mix). With none usable, it starts
again from scratch, with a warning. Its reports then carry ``corrupt_checkpoints`` (how many were
skipped), also logged to MLflow.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Ray, torch and the engine load in the trial (the names below stay cheap)
    from trainables.experiment import PreparedRun

EVALUATION = "evaluation"        # 1, 2, ... at each evaluation; absent from the final report
FINAL = "final_report"           # 1 in the report made after training ended
NODE = "node_id"                 # the Ray node the trial ran on
GPU_IDS = "gpu_ids"              # the GPU ids Ray gave the trial ("0", "0,1"; "none")
MODEL_KEYS = ("teacher_id", "student_id", "teacher_params", "student_params", "teacher_layers",
              "student_layers", "device_name", GPU_IDS)

#: reported first, so Ray Tune's trial table (which shows a result's first few metrics) has them
_SHOWN = ("eval_score", "best_eval_score", "step", "train_loss")

#: population-based training: ``hp/<name>`` = a reported hyperparameter's current value; the first
#: report after an exploit (the trial restarted from another trial's checkpoint with a perturbed
#: config) carries ``pbt_exploit = 1`` and ``pbt_exploited_from`` (the other trial's id)
HP_PREFIX = "hp/"
EXPLOIT = "pbt_exploit"
EXPLOITED_FROM = "pbt_exploited_from"
LAST_EVALUATION = "pbt_last_evaluation"  # 1 in a PBT trial's report of its last evaluation

STATE_FILE = "trial_state.json"
SKIPPED = "corrupt_checkpoints"  # in the reports of a trial that skipped unreadable checkpoints
STEP_LOGS_FILE = "step_logs.csv"
TRIAL_SUMMARY_FILE = "summary.json"
STUDENT_DIR = "student"

#: summary values copied into the final report (when the method produced them)
FINAL_SUMMARY_KEYS = ("train_seconds", "step_seconds", "step_ms", "peak_mem_mb", "student_params", "teacher_params",
                      "param_ratio", "speedup",
                      "student_infer_seconds", "teacher_infer_seconds", "final_train_loss", "best_step",
                      "student_layers", "teacher_layers")


def is_number(value: Any) -> bool:
    """A reportable metric value: an int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def model_info(prep: "PreparedRun") -> dict[str, Any]:
    """Ids and sizes of the run's student and (first) teacher."""
    info: dict[str, Any] = {"student_id": prep.student_info.source,
                            "student_params": prep.student_info.params,
                            "student_layers": prep.student_info.layers,
                            "device_name": prep.engine.device_name()}
    if prep.teacher_info is not None:
        info.update(teacher_id=",".join(prep.teacher_paths), teacher_params=prep.teacher_info.params,
                    teacher_layers=prep.teacher_info.layers)
    return info


def write_step_logs(logs: list[dict], path: str) -> None:
    """The engine's per-step logs as CSV: ``step`` (1-based) then every logged key."""
    import pandas as pd

    frame = pd.DataFrame.from_records(logs)
    frame.insert(0, "step", range(1, len(logs) + 1))
    frame.to_csv(path, index=False)


class _TrialState:
    """What the wrapper adds to the engine's state: evaluation count, best metrics, model info and
    (population-based training) the schedule: one entry per evaluation, ``{"evaluation", "step",
    "trial", <hyperparameter>: value}``, inherited from the cloned trial on an exploit, so it is
    the history of the weights the trial ends with."""

    def __init__(self, evaluation: int = 0, best: dict | None = None, model: dict | None = None,
                 final: dict | None = None, schedule: list | None = None):
        self.evaluation, self.best, self.model, self.final = evaluation, best, model or {}, final
        self.schedule = schedule or []

    def save(self, directory: str) -> None:
        with open(os.path.join(directory, STATE_FILE), "w") as fh:
            json.dump(vars(self), fh)

    @classmethod
    def load(cls, directory: str) -> "_TrialState":
        """The state saved in ``directory`` (a fresh one where a checkpoint has none); a file that
        cannot be parsed raises :class:`~trainables.engine.CorruptCheckpointError`."""
        from trainables.engine import CorruptCheckpointError

        path = os.path.join(directory, STATE_FILE)
        if not os.path.isfile(path):
            return cls()
        try:
            with open(path) as fh:
                return cls(**json.load(fh))
        except (OSError, ValueError, TypeError) as err:
            raise CorruptCheckpointError(path, err) from err


_CHECKPOINT_DIR = re.compile(r"checkpoint_(\d+)$")


def _older_checkpoints(checkpoint) -> list:
    """The checkpoints Ray kept beside ``checkpoint`` in its trial folder that are older than it,
    newest first (``checkpoint_<n>`` folders with a smaller ``n``)."""
    import pyarrow.fs
    from ray import tune

    parent, name = posixpath.split(checkpoint.path.rstrip("/"))
    own = _CHECKPOINT_DIR.match(name)
    if own is None:
        return []
    try:
        infos = checkpoint.filesystem.get_file_info(pyarrow.fs.FileSelector(parent))
    except OSError:
        return []
    older = []
    for info in infos:
        match = _CHECKPOINT_DIR.match(info.base_name)
        if info.type == pyarrow.fs.FileType.Directory and match and int(match[1]) < int(own[1]):
            older.append((int(match[1]), info.path))
    return [tune.Checkpoint(path, filesystem=checkpoint.filesystem) for _, path in sorted(older, reverse=True)]


def _check_checkpoint(directory: str) -> "_TrialState":
    """The wrapper state of a checkpoint that can be continued from; a CorruptCheckpointError
    where its trial state or (for a checkpoint taken during training) its engine state is
    unreadable."""
    from trainables.engine import read_checkpoint

    state = _TrialState.load(directory)
    if state.final is None:
        read_checkpoint(directory)  # the whole file, as the engine will read it
    return state


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def usable_checkpoint(checkpoint) -> Iterator[tuple[str | None, "_TrialState", int]]:
    """Open the checkpoint a restarted trial continues from: ``checkpoint`` (Ray's latest) if it
    reads back, else the newest older one that does; yields ``(directory, state, skipped)``, with
    ``directory`` None (and a fresh state) when none does: the trial starts from scratch.
    ``skipped`` counts the unreadable checkpoints, each named in a warning on stderr."""
    from trainables.engine import CorruptCheckpointError

    skipped = 0
    for candidate in [checkpoint, *_older_checkpoints(checkpoint)]:
        with candidate.as_directory() as directory:
            try:
                state = _check_checkpoint(directory)
            except CorruptCheckpointError as err:
                skipped += 1
                _warn(f"{err}; checkpoint {candidate.path} is skipped")
                continue
            if skipped:
                _warn(f"the trial continues from the older checkpoint {candidate.path}")
            yield directory, state, skipped
            return
    _warn(f"no usable checkpoint of this trial (skipped {skipped}); it starts again from scratch")
    yield None, _TrialState(), skipped


def quiet_worker() -> None:
    """Keep the driver's console to Ray Tune's trial table: no per-trial progress bars or
    per-checkpoint log lines from the workers."""
    import logging

    import datasets

    datasets.disable_progress_bars()
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)


def make_trainable(method: str, base: dict[str, Any], *, threads: int | None = None,
                   checkpoint_every: int = 1, system_metrics: float = 0.0,
                   report_hparams: tuple[str, ...] = ()) -> Callable[[dict], None]:
    """The Tune function trainable of ``method``: ``trainable(config)``.

    ``base`` holds the config fields the sweep does not vary (validated by the caller);
    ``threads`` sets torch's CPU threads in the trial (the trial's CPU share);
    ``checkpoint_every`` evaluations a checkpoint is reported (the final one always is);
    ``system_metrics`` > 0: every evaluation also reports the machine's system metrics sampled every
    that many seconds (:mod:`trainables.system_metrics`).
    ``report_hparams``: hyperparameters whose current numeric values each evaluation reports as
    ``hp/<name>`` (population-based training changes them during a trial).
    """
    base = {**base, "method": method}
    checkpoint_every = max(1, int(checkpoint_every))

    def trainable(config: dict) -> None:
        import ray
        import torch
        from ray import tune

        from trainables.config import DistillConfig
        from trainables.runner_exit import finish_before_exit
        from trainables.system_metrics import sampling

        finish_before_exit()  # the process waits for this thread to unwind when the trial stops
        quiet_worker()
        if threads:
            torch.set_num_threads(max(1, int(threads)))
        cfg = DistillConfig.from_dict({**base, **config})
        node = ray.get_runtime_context().get_node_id()
        gpus = gpu_ids(ray.get_gpu_ids(), cfg.device)
        hparams = {f"{HP_PREFIX}{k}": getattr(cfg, k) for k in report_hparams if is_number(getattr(cfg, k, None))}
        with sampling(system_metrics) as sampled:
            checkpoint = tune.get_checkpoint()
            if checkpoint is None:
                _train(cfg, _TrialState(), None, node, checkpoint_every, gpus, sampled=sampled, hparams=hparams or None)
                return
            donor = cloned_from(checkpoint)
            with usable_checkpoint(checkpoint) as (directory, state, skipped):
                extra = {SKIPPED: skipped} if skipped else {}
                if state.final is not None:  # it had finished: report the same result, train nothing
                    tune.report({**state.final, **extra, NODE: node})
                    return
                first = {EXPLOIT: 1, EXPLOITED_FROM: donor} if donor and directory else {}
                _train(cfg, state, directory, node, checkpoint_every, gpus, extra, sampled=sampled,
                       hparams=hparams or None, first=first)

    trainable.__name__ = method.replace("-", "_")
    trainable.__qualname__ = trainable.__name__
    return trainable


def cloned_from(checkpoint) -> str | None:
    """The id of the trial whose checkpoint this trial starts from, where it is another trial's
    (a population-based training exploit); None for the trial's own checkpoint."""
    from ray import tune

    own = os.path.basename(os.path.normpath(tune.get_context().get_trial_dir()))
    folder = posixpath.basename(posixpath.dirname(checkpoint.path.rstrip("/")))
    if folder == own:
        return None
    found = re.search(r"_([0-9a-f]{5}_\d{5})$", folder)
    return found.group(1) if found else folder


def gpu_ids(assigned: list, device: str) -> str:
    """The GPU ids Ray gave the trial, as reported (``"none"`` when it has none). Ray sets the
    trial's ``CUDA_VISIBLE_DEVICES`` to them, so ``cuda`` is that GPU; a GPU Ray declares but
    torch cannot use (a logical GPU on a CPU-only node) leaves ``device=auto`` on the CPU, said
    once on the trial's stderr."""
    import sys

    import torch

    ids = ",".join(str(i) for i in assigned) or "none"
    if assigned and device == "auto" and not torch.cuda.is_available():
        print(f"trial: Ray gave this trial GPU {ids}, but CUDA is not available to torch here; "
              "training on the CPU", file=sys.stderr, flush=True)
    return ids


def _train(cfg, state: _TrialState, resume_from: str | None, node: str, checkpoint_every: int,
           gpus: str = "none", extra: dict | None = None, sampled: Callable[[], dict] = dict,
           hparams: dict | None = None, first: dict | None = None) -> None:
    from ray import tune

    from trainables.experiment import run, save_model

    held: dict[str, PreparedRun] = {}

    def on_prepared(prep: "PreparedRun") -> None:
        from trainables.experiment import latency_of, speedup_of

        held["prep"] = prep
        # sizes, the measured speed-up and latency in every report: a trial stopped early has them too
        state.model = {**model_info(prep), GPU_IDS: gpus, **speedup_of(prep), **latency_of(prep)}

    def report(metrics: dict, save_checkpoint: Callable[[str], None]) -> None:
        state.evaluation += 1
        if state.best is None or metrics["eval_score"] > state.best["eval_score"]:
            state.best = {k: v for k, v in metrics.items() if k.startswith("eval_")}
        # the first keys are the ones Ray Tune's progress table shows
        result = {k: metrics[k] for k in _SHOWN if k in metrics}
        result.update({k: v for k, v in metrics.items() if is_number(v)})
        result.update({f"best_{k}": v for k, v in state.best.items()})
        result.update(state.model)
        result.update({EVALUATION: state.evaluation, NODE: node, **(extra or {}), **sampled(), **(hparams or {})})
        if first:  # the first report after a PBT exploit
            result.update(first)
            first.clear()
        if hparams is not None:
            state.schedule.append({EVALUATION: state.evaluation, "step": metrics["step"],
                                   "trial": tune.get_context().get_trial_id(),
                                   **{k[len(HP_PREFIX):]: v for k, v in hparams.items()}})
            if not held["prep"].engine.evaluates_again():
                result[LAST_EVALUATION] = 1
        if state.evaluation % checkpoint_every:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory(prefix="distill-ckpt-") as tmp:
            save_checkpoint(tmp)
            state.save(tmp)
            write_step_logs(held["prep"].engine.result.logs, os.path.join(tmp, STEP_LOGS_FILE))
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))

    summary = run(cfg, report=report, resume_from=resume_from, on_prepared=on_prepared)
    prep = held["prep"]
    best = {k: v for k, v in summary.items() if k.startswith("eval_") and is_number(v)}
    # eval_* are the selected student's (``select``: the best dev evaluation, or the last one)
    final: dict[str, Any] = {"eval_score": summary["eval_score"],
                             "best_eval_score": summary.get("best_eval_score", summary["eval_score"]),
                             "step": prep.engine.step}
    final.update({f"best_{k}": v for k, v in best.items() if k != "eval_score"})
    final.update({k: v for k, v in summary.items() if k.startswith("test_") and is_number(v)})
    final.update({k: summary[k] for k in FINAL_SUMMARY_KEYS if is_number(summary.get(k))})
    final.update(state.model)
    final["evaluations"] = state.evaluation
    final.update(extra or {})
    final[FINAL] = 1
    state.final = final
    with tempfile.TemporaryDirectory(prefix="distill-final-") as tmp:
        save_model(prep.engine.selected_student_model(), prep.tokenizer, os.path.join(tmp, STUDENT_DIR))
        write_step_logs(prep.engine.result.logs, os.path.join(tmp, STEP_LOGS_FILE))
        with open(os.path.join(tmp, TRIAL_SUMMARY_FILE), "w") as fh:
            json.dump({**summary, "config": cfg.to_dict(), **({"hp_schedule": state.schedule} if hparams else {})},
                      fh, indent=2, default=str)
        state.save(tmp)
        tune.report({**final, NODE: node}, checkpoint=tune.Checkpoint.from_directory(tmp))

