"""The training loop every method shares.

The engine owns: devices, the optimiser schedules (:class:`~trainables.optim.Updater`), seeding
and data order, optional bf16 autocast, student warm-up epochs, evaluation on dev every
``eval_steps`` or epoch (scored by :func:`trainables.evaluation.evaluate`), best-model selection
on dev, checkpoints (its state; the file in :mod:`trainables.engine_state`) to save and resume, and
a reporting hook so the same loop runs in a Ray Tune trainable or plainly in-process. A method
only supplies ``step``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader

from trainables import allocator
from trainables.config import DistillConfig
from trainables.engine_state import (CHECKPOINT_FILE, CorruptCheckpointError, atomic_save,  # noqa: F401
                                     load_state, read_checkpoint, rng_state, save_state, set_rng_state)
from trainables.evaluation import evaluate, to_device
from trainables.methods.base import Batch, Method
from trainables.optim import Updater
from trainables.tasks import TaskSpec

#: ``report(metrics, save_checkpoint)``: called at each evaluation. ``save_checkpoint(dir)``
#: writes the engine's full state into ``dir`` (for Ray Tune checkpoints).
Reporter = Callable[[dict, Callable[[str], None]], None]
#: ``augment(batch) -> batch``: applied to every training/quiz batch (e.g. noise injection).
Augmenter = Callable[[Batch], Batch]

#: steps between reads of the step logs from the device (and the non-finite loss check), besides
#: every evaluation
LOG_EVERY = 50


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run is failed, not silently continued."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from trainables.errors import UserError

        raise UserError("--device cuda was asked for but no CUDA device is available (valid here: cpu, auto)")
    return torch.device(name)


@dataclass
class Loaders:
    train: DataLoader
    dev: DataLoader
    quiz: DataLoader | None = None
    test: DataLoader | None = None    # a labelled test split: scored once, after training


@dataclass
class TrainResult:
    best: dict                                       # metrics of the best evaluation (by eval_score)
    selected: dict = field(default_factory=dict)     # metrics of the selected student's evaluation
    history: list[dict] = field(default_factory=list)   # every evaluation's metrics
    losses: list[float] = field(default_factory=list)   # training loss of every step
    logs: list[dict] = field(default_factory=list)      # every step's method logs (all scalars)


def _cycle(loader: DataLoader) -> Iterator[Batch]:
    while True:
        yield from loader


class Engine:
    def __init__(self, cfg: DistillConfig, task: TaskSpec, method: Method, loaders: Loaders,
                 device: torch.device, augment: Augmenter | None = None,
                 progress: bool | Callable[..., object] = False):
        """``progress``: a tqdm bar and evaluation lines (True), or a factory
        ``progress(total=, initial=, desc=)`` of a bar-like object (e.g. labelled lines,
        :func:`trainables.progress.line_progress`)."""
        self.cfg, self.task, self.method, self.loaders = cfg, task, method, loaders
        self.device, self.augment, self.progress = device, augment, progress
        self.steps_per_epoch = len(loaders.train)
        self.total_epochs = cfg.warmup_epochs + cfg.epochs
        self.total_steps = self.total_epochs * self.steps_per_epoch

        method.student.to(device).train()
        for t in method.teachers:
            # one rule for every method: teacher dropout is a setting, not a property of the method
            t.to(device).train(cfg.teacher_dropout)
            t.requires_grad_(method.teacher_learns)
        student_opt = Updater(method.student.parameters(), cfg.student_lr, total_steps=self.total_steps,
                              warmup_ratio=cfg.lr_warmup_ratio, weight_decay=cfg.weight_decay,
                              max_grad_norm=cfg.max_grad_norm, fused=cfg.fused_optimizer)
        teacher_opt = None
        if method.teacher_learns:
            meta_steps = math.ceil(cfg.epochs * self.steps_per_epoch / cfg.meta_interval)
            teacher_opt = Updater(method.teacher_parameters(), cfg.teacher_lr, total_steps=meta_steps,
                                  warmup_ratio=cfg.lr_warmup_ratio, weight_decay=cfg.weight_decay,
                                  max_grad_norm=cfg.max_grad_norm, fused=cfg.fused_optimizer, name="teacher")
        method.attach(student_opt, teacher_opt)

        # training state (saved in checkpoints)
        self.step = 0                 # global optimisation steps done
        self.best: dict | None = None
        self.best_student: dict | None = None
        self.result = TrainResult(best={})
        self._pending: list[dict] = []  # step logs since the last evaluation
        self._unread: list[tuple[int, dict]] = []  # (step, logs) not yet read from the device
        self._bar = None
        self._interval_start: float | None = None  # wall clock at the first unread step
        self.interval_ms: list[float] = []         # ms/step of each log interval (no evaluation)
        self.step_seconds = 0.0  # wall seconds in optimisation steps so far (no evaluation, checkpoint)

    # ---- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        m = self.method
        return {
            "step": self.step,
            "student": m.student.state_dict(),
            "teachers": [t.state_dict() for t in m.teachers] if m.teacher_learns else None,
            "student_opt": m.student_opt.state_dict(),
            "teacher_opt": m.teacher_opt.state_dict() if m.teacher_opt else None,
            "method": m.state_dict(),
            "best": self.best,
            "best_student": self.best_student,
            "result": dataclasses.asdict(self.result),
            "pending": self._pending,
            "step_seconds": self.step_seconds,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        m = self.method
        self.step = state["step"]
        m.student.load_state_dict(state["student"])
        if state["teachers"] is not None:
            for t, s in zip(m.teachers, state["teachers"], strict=True):
                t.load_state_dict(s)
        m.student_opt.load_state_dict(state["student_opt"])
        if m.teacher_opt and state["teacher_opt"]:
            m.teacher_opt.load_state_dict(state["teacher_opt"])
        # the config's lrs win over the checkpoint's (the same on a plain resume; perturbed after a PBT
        # exploit); the methods read alpha, temperature, ... from the config at every step
        m.student_opt.set_base_lr(self.cfg.student_lr)
        if m.teacher_opt:
            m.teacher_opt.set_base_lr(self.cfg.teacher_lr)
        m.load_state_dict(state["method"])
        self.best, self.best_student = state["best"], state["best_student"]
        self.result, self._pending = TrainResult(**state["result"]), state["pending"]
        self.step_seconds = float(state.get("step_seconds", 0.0))
        set_rng_state(state["rng"])

    def save_checkpoint(self, directory: str) -> None:
        """Write the engine state to ``directory`` atomically (see :func:`~trainables.engine_state.atomic_save`)."""
        save_state(self.state_dict(), directory)

    def load_checkpoint(self, directory: str) -> None:
        """Load an engine state (``weights_only``, so loading runs no pickled code; an unreadable
        file raises :class:`~trainables.engine_state.CorruptCheckpointError`)."""
        self.load_state_dict(load_state(directory, self.device))

    # ---- the loop ------------------------------------------------------------------------
    def _quiz_batches(self, quiz: Iterator[Batch] | None) -> list[Batch] | None:
        if quiz is None:
            return None
        return [self._prepare(next(quiz)) for _ in range(self.cfg.num_quiz_batches)]

    def _prepare(self, batch: Batch) -> Batch:
        batch = to_device(batch, self.device)
        return self.augment(batch) if self.augment else batch

    def _evaluate_and_report(self, epoch: float, report: Reporter | None) -> None:
        cfg = self.cfg
        metrics = {"step": self.step, "epoch": epoch}
        if self._pending:
            for key in self._pending[0]:
                metrics[f"train_{key}"] = float(np.mean([p[key] for p in self._pending if key in p]))
        self._pending = []
        metrics["student_lr_now"] = self.method.student_opt.lr
        metrics["step_seconds"] = self.step_seconds
        metrics.update(evaluate(self.method.student, self.loaders.dev, self.task, self.device, cfg.bf16))
        if cfg.eval_teacher and self.method.teachers:
            metrics.update(evaluate(self.method.teachers[0], self.loaders.dev, self.task, self.device,
                                    cfg.bf16, prefix="teacher_eval_"))
        if self.best is None or metrics["eval_score"] > self.best["eval_score"]:
            self.best = dict(metrics)
            self.best_student = {k: v.detach().to("cpu", copy=True)
                                 for k, v in self.method.student.state_dict().items()}
        metrics["best_eval_score"] = self.best["eval_score"]
        self.result.history.append(metrics)
        if self.progress:
            from tqdm.auto import tqdm

            shown = {k: round(v, 4) for k, v in metrics.items()
                     if k.startswith(("eval_", "teacher_eval_", "train_loss"))}
            write = self._bar.write if self._bar is not None else tqdm.write
            write(f"step {self.step} epoch {epoch:.2f}: {shown}")
        if report is not None:
            report(metrics, self.save_checkpoint)

    def train_step(self, batch: Batch, quiz: Iterator[Batch] | None, warming_up: bool = False) -> dict:
        """One optimisation step of the method on a loader batch: device placement, noise, quiz
        batches (drawn only for a step that uses them), autocast. Returns the method's logs, whose
        values may still be device tensors (see :meth:`_flush`). The bench times this call."""
        method = self.method
        batch = self._prepare(batch)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            if warming_up:
                return method.warmup_step(batch)
            return method.step(batch, self._quiz_batches(quiz) if method.wants_quiz() else None)

    def _flush(self) -> None:
        """Read the logs of the steps since the last flush from the device (one synchronisation
        per log interval, none per step), fail on a non-finite loss naming its step, and keep them."""
        if not self._unread:
            return
        unread, self._unread = self._unread, []
        if self._interval_start is not None:  # the read waits for the device: the interval is done
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds = time.perf_counter() - self._interval_start
            self.step_seconds += seconds
            self.interval_ms.append(1000 * seconds / len(unread))
            self._interval_start = None
        tensors = [v.detach().double().reshape(()) for _, logs in unread for v in logs.values() if torch.is_tensor(v)]
        read = iter(torch.stack(tensors).cpu().tolist() if tensors else [])
        for step, logs in unread:
            floats = {k: next(read) if torch.is_tensor(v) else float(v) for k, v in logs.items()}
            if not math.isfinite(floats["loss"]):
                raise NonFiniteLossError(f"training loss became {floats['loss']} at step {step} "
                                         f"({self.cfg.method}, epoch {step // self.steps_per_epoch})")
            self.result.losses.append(floats["loss"])
            self.result.logs.append(floats)
            self._pending.append(floats)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{self.result.losses[-1]:.4f}")

    def _due_for_evaluation(self, end_of_epoch: bool) -> bool:
        """Every ``eval_steps`` steps (else at epoch ends) and at the end of training, except an
        end-of-epoch or end-of-training evaluation within a quarter of ``eval_steps`` of the
        previous one (the student barely moved; ``select=final`` always evaluates the end)."""
        cfg = self.cfg
        if cfg.eval_steps and self.step % cfg.eval_steps == 0:
            return True
        last = self.step == self.total_steps
        if not (end_of_epoch and (not cfg.eval_steps or last)):
            return False
        previous = self.result.history[-1]["step"] if self.result.history else 0
        if last and cfg.select == "final":
            return True
        return not (cfg.eval_steps and self.result.history and self.step - previous <= cfg.eval_steps // 4)

    def evaluates_again(self) -> bool:
        """Whether another evaluation comes after the current step (see :meth:`_due_for_evaluation`)."""
        cfg = self.cfg
        if self.step >= self.total_steps:
            return False
        if not cfg.eval_steps or (self.step // cfg.eval_steps + 1) * cfg.eval_steps <= self.total_steps:
            return True  # another epoch end, or another multiple of eval_steps
        return cfg.select == "final" or self.total_steps - self.step > cfg.eval_steps // 4

    def fit(self, report: Reporter | None = None, resume_from: str | None = None) -> TrainResult:
        cfg, method = self.cfg, self.method
        allocator.tune()  # keep freed step buffers in the process (see trainables.allocator)
        seed_everything(cfg.seed)
        if resume_from:
            self.load_checkpoint(resume_from)
        quiz = _cycle(self.loaders.quiz) if (method.needs_quiz and self.loaders.quiz is not None) else None
        if self.progress:
            from tqdm.auto import tqdm

            make = self.progress if callable(self.progress) else partial(tqdm, dynamic_ncols=True)
            self._bar = make(total=self.total_steps, initial=self.step, desc=f"{cfg.method}")
        start_epoch, skip = divmod(self.step, self.steps_per_epoch)
        for epoch in range(start_epoch, self.total_epochs):
            warming_up = epoch < cfg.warmup_epochs
            generator = getattr(self.loaders.train, "generator", None)
            if generator is not None:  # data order depends on (seed, epoch) only: resumable
                generator.manual_seed(cfg.seed * 1000 + epoch)
            for i, batch in enumerate(self.loaders.train):
                if epoch == start_epoch and i < skip:
                    continue
                if self._interval_start is None:
                    self._interval_start = time.perf_counter()
                logs = self.train_step(batch, quiz, warming_up)
                self._unread.append((self.step, logs))  # the step's 0-based index
                self.step += 1
                if self.step % LOG_EVERY == 0:
                    self._flush()
                if self._bar is not None:
                    self._bar.update(1)
                if self._due_for_evaluation(i + 1 == self.steps_per_epoch):
                    self._flush()
                    self._evaluate_and_report(self.step / self.steps_per_epoch, report)
        self._flush()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.best is None:  # nothing trained (e.g. resumed after the end): evaluate once
            self._evaluate_and_report(self.step / max(1, self.steps_per_epoch), report)
        self.result.best = dict(self.best)
        self.result.selected = dict(self.best if cfg.select == "best-dev" else self.result.history[-1])
        return self.result

    def device_name(self) -> str:
        """``cpu``, or ``cuda:0 (NVIDIA H100 ...)``."""
        if self.device.type == "cuda":
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        return str(self.device)

    def cost(self) -> dict:
        """What the run's steps cost: ``step_ms`` (median ms per training step over the log
        intervals, evaluation excluded), ``step_seconds`` (all optimisation steps, the same way), ``peak_mem_mb`` (CUDA: peak allocated; CPU: the process's
        peak RSS) and ``device`` (with the GPU's name)."""
        out: dict = {"device": self.device_name(), "step_seconds": self.step_seconds}
        if self.interval_ms:
            out["step_ms"] = float(np.median(self.interval_ms))
        if self.device.type == "cuda":
            out["peak_mem_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            from trainables.profiling import peak_rss_mb

            out["peak_mem_mb"] = peak_rss_mb()
        return out

    def best_student_model(self) -> torch.nn.Module:
        """A copy of the student with the weights of its best evaluation."""
        model = copy.deepcopy(self.method.student)
        if self.best_student is not None:
            model.load_state_dict(self.best_student)
        return model

    def selected_student_model(self) -> torch.nn.Module:
        """The student ``select`` chooses: the best dev evaluation's, or the final one."""
        if self.cfg.select == "final":
            return copy.deepcopy(self.method.student)
        return self.best_student_model()

    def test_metrics(self) -> dict[str, float]:
        """The selected student's metrics on the test split (``test_<metric>``, ``test_score``),
        or nothing when the task has no labelled test split. Called once, after training."""
        if self.loaders.test is None:
            return {}
        return evaluate(self.selected_student_model(), self.loaders.test, self.task, self.device,
                        self.cfg.bf16, prefix="test_")
