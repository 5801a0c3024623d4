"""The contract between the engine and a distillation method.

A method holds the models it trains and does its math in :meth:`Method.step`; the engine owns
devices, optimiser schedules (it hands the method ready :class:`~trainables.optim.Updater` s),
evaluation, checkpoints and reporting. Class attributes tell the engine what the method needs.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from trainables.config import DistillConfig
from trainables.losses import task_loss
from trainables.models import forward_inputs
from trainables.optim import Updater
from trainables.teacher_outputs import ROW
from trainables.tasks import TaskSpec

Batch = dict[str, torch.Tensor]


def model_inputs(batch: Batch, model: nn.Module | None = None) -> Batch:
    """The keyword arguments of ``model``'s forward in ``batch``: no labels, and only the inputs
    ``model`` takes (e.g. no ``token_type_ids`` for DistilBERT; see
    :func:`trainables.models.forward_inputs`). Without ``model``: the batch without its labels."""
    if model is not None:
        return forward_inputs(model, batch)
    return {k: v for k, v in batch.items() if k != "labels"}


class Method:
    name: ClassVar[str] = ""
    uses_teacher: ClassVar[bool] = True      # needs a fine-tuned teacher
    teacher_learns: ClassVar[bool] = False   # the engine builds a teacher Updater (lr teacher_lr)
    needs_quiz: ClassVar[bool] = False       # step() receives quiz batches
    second_order: ClassVar[bool] = False     # models must use eager attention (double backward)

    @classmethod
    def double_backward(cls, cfg: DistillConfig) -> bool:
        """Whether the run differentiates through a gradient (then its models use eager attention:
        SDPA has no double backward)."""
        return cls.second_order

    def __init__(self, cfg: DistillConfig, task: TaskSpec, student: nn.Module,
                 teachers: list[nn.Module]):
        self.cfg = cfg
        self.task = task
        self.student = student
        self.teachers = teachers
        self.student_opt: Updater | None = None
        self.teacher_opt: Updater | None = None
        #: a frozen teacher's outputs per training row (:mod:`trainables.teacher_outputs`), when used
        self.cached_teacher_outputs = None

    # ---- the engine's hooks ----------------------------------------------------------------
    def attach(self, student_opt: Updater, teacher_opt: Updater | None) -> None:
        self.student_opt = student_opt
        self.teacher_opt = teacher_opt

    def teacher_parameters(self) -> list[nn.Parameter]:
        """What the teacher Updater optimises (all teachers' parameters)."""
        return [p for t in self.teachers for p in t.parameters()]

    def step(self, batch: Batch, quiz_batches: list[Batch] | None) -> dict[str, float | torch.Tensor]:
        """One training step on ``batch``; updates the models; returns scalars to log (``loss`` is
        the student's training objective). Values may be 0-dim device tensors (detached): the
        engine reads them at its log interval, so a step need not wait for the device."""
        raise NotImplementedError

    def wants_quiz(self) -> bool:
        """Whether the coming :meth:`step` uses quiz batches (the engine draws them only then)."""
        return self.needs_quiz

    def warmup_step(self, batch: Batch) -> dict[str, float | torch.Tensor]:
        """Student warm-up: task loss only, no teacher."""
        loss = self.hard_loss(self.student(**model_inputs(batch, self.student)).logits, batch)
        self.student_opt.update(loss)
        return {"loss": loss.detach()}

    def state_dict(self) -> dict:
        """Method state beyond the models and the engine's updaters (e.g. learnable weights)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    # ---- helpers for subclasses ------------------------------------------------------------
    def hard_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return task_loss(logits, batch["labels"], self.task.is_regression)

    def cached_layers(self) -> tuple[int, ...]:
        """The teacher hidden-state indices whose [CLS] vectors the method reads (cache them too)."""
        return ()

    def teacher_outputs(self, batch: Batch, *, hidden: bool = False, grad: bool = False):
        """Each teacher's forward on ``batch`` (no graph unless ``grad``), read from the cached
        outputs when the run has them and the batch carries its training rows."""
        if self.cached_teacher_outputs is not None and not grad and ROW in batch:
            return self.cached_teacher_outputs.outputs(batch[ROW])
        with torch.set_grad_enabled(grad):
            return [t(**model_inputs(batch, t), output_hidden_states=hidden) for t in self.teachers]

    @staticmethod
    def mean_logits(outputs) -> torch.Tensor:
        """Multi-teacher soft targets: the average of the teachers' logits."""
        return torch.stack([o.logits for o in outputs]).mean(dim=0)
