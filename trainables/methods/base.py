"""The contract between the engine and a distillation method.

A method holds the models it trains and does its math in :meth:`Method.step`; the engine owns
devices, optimiser schedules (it hands the method ready :class:`~trainables.optim.Updater` s),
evaluation, checkpoints and reporting. Class attributes tell the engine what the method needs.

A method is self-contained: besides its math, its class declares

* ``Options``: a dataclass of the hyperparameters only it reads, declared with
  :func:`trainables.schema.hparam` (the registry adds them to the config: ``--set``, ``--help``,
  MLflow params, the README's table);
* ``space``: its search space, a define-by-run function ``space(s)`` calling ``s("name")`` for each
  hyperparameter it searches (optionally with a default range in the ``--space`` file's format,
  ``s("beta", {"low": 10, "high": 1000, "log": True})``), or a dict ``{name: range or None}``; a
  class without its own ``space`` searches :func:`base_space`;
* ``baseline``: the first trial of its search where it differs from the config defaults.

Adding a method is one file in this package and one line in its registry (or
:func:`trainables.methods.register`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from trainables.schema import Config, hparam

if TYPE_CHECKING:  # torch loads where a method trains: the registry and the options stay light
    import torch
    from torch import nn

    from trainables.optim import Updater
    from trainables.tasks import TaskSpec

Batch = "dict[str, torch.Tensor]"


def model_inputs(batch: Batch, model: nn.Module | None = None) -> Batch:
    """The keyword arguments of ``model``'s forward in ``batch``: no labels, and only the inputs
    ``model`` takes (e.g. no ``token_type_ids`` for DistilBERT; see
    :func:`trainables.models.forward_inputs`). Without ``model``: the batch without its labels."""
    from trainables.models import forward_inputs

    if model is not None:
        return forward_inputs(model, batch)
    return {k: v for k, v in batch.items() if k != "labels"}


# ---- search spaces (plain functions of a ``search_spaces.space.Suggest``; no Optuna here) ---------

def base_space(s) -> None:
    """The space of a method without its own: ``student_lr``; plus ``alpha`` and ``temperature``
    when it uses a teacher; plus ``teacher_lr`` when its teacher learns."""
    s("student_lr")
    if s.method.uses_teacher:
        s("alpha")
        s("temperature")
    if s.method.teacher_learns:
        s("teacher_lr")


def distillation_space(s) -> None:
    """What every distillation method searches: lambda, (mu,) alpha, T and the batch size
    (MetaDistil searched it for its method and every baseline alike)."""
    s("student_lr")
    if s.method.teacher_learns:
        s("teacher_lr")
    s("alpha")
    s("temperature")
    s("batch_size")


SpaceDecl = Callable[[Any], None] | Mapping[str, Any]


@dataclass(frozen=True)
class Pairing:
    """What a method may require of the teacher/student pair (see :meth:`Method.unfit`): the
    teachers' and the student's depths (None where a model's config does not say) and whether the
    student has the teachers' architecture (model type and hidden size: true for the default
    student, the teacher's own first layers)."""

    teacher_layers: tuple[int | None, ...]
    student_layers: int | None
    same_architecture: bool

    def layer_map_error(self) -> str | None:
        """Why the teachers' layers cannot be mapped onto the student's (each teacher's depth must
        be a whole multiple of the student's), or None."""
        s = self.student_layers
        for t in self.teacher_layers:
            if t is not None and s is not None and (s < 1 or t < s or t % s):
                return f"the teacher's {t} layers are not a whole multiple of the student's {s}"
        return None


#: hyperparameters every run reads (the engine's and the student's)
CORE_HPARAMS = ("student_lr", "batch_size", "epochs", "seed", "student_layers", "max_seq_length", "noise_prob",
                "noise_token", "warmup_epochs", "lr_warmup_ratio", "weight_decay", "max_grad_norm")
#: ... every run with a teacher, and every run whose teacher is meta-updated through a quiz set
TEACHER_HPARAMS = ("alpha", "temperature", "kd_loss", "teacher_dropout", "num_teachers")
QUIZ_HPARAMS = ("inner_lr", "num_quiz_batches")


class Method:
    name: ClassVar[str] = ""
    uses_teacher: ClassVar[bool] = True      # needs a fine-tuned teacher
    teacher_learns: ClassVar[bool] = False   # the engine builds a teacher Updater (lr teacher_lr)
    needs_quiz: ClassVar[bool] = False       # step() receives quiz batches
    second_order: ClassVar[bool] = False     # the student must use eager attention (double backward)
    #: the first (baseline) trial of the method's search, where it differs from the config defaults
    baseline: ClassVar[dict[str, Any]] = {}
    #: shared hyperparameters beyond those every method, every teacher-using method, every learning
    #: teacher and every quiz-using method reads (:meth:`hyperparameters`), e.g. ``beta``
    reads: ClassVar[tuple[str, ...]] = ()
    #: hyperparameters that only give the first value of a state the method learns (a restored
    #: checkpoint keeps the learned value), e.g. meta-adaptive-kd's ``alpha``: population-based
    #: training does not perturb them
    learned: ClassVar[tuple[str, ...]] = ()
    # ``Options`` (a dataclass of its own hyperparameters) and ``space`` (see the module doc) are
    # declared by the classes that have them; see :func:`own_space` and :func:`option_classes`.

    @classmethod
    def own_space(cls) -> SpaceDecl | None:
        """The space declared in this class's own body (not inherited), or None."""
        return getattr(cls, "space") if "space" in vars(cls) else None

    @classmethod
    def hyperparameters(cls) -> set[str]:
        """The hyperparameters a run of this method reads (what its MLflow run records): the ones
        every run reads, the teacher's where it has one (``teacher_lr`` where the teacher learns),
        the quiz's where it meta-steps, what it :attr:`reads` besides, and its own options."""
        names = set(CORE_HPARAMS) | set(cls.reads)
        if cls.uses_teacher:
            names |= set(TEACHER_HPARAMS)
        if cls.teacher_learns:
            names.add("teacher_lr")
        if cls.needs_quiz:
            names |= set(QUIZ_HPARAMS)
        for options in cls.option_classes():
            names |= set(options.__dataclass_fields__)
        return names

    @classmethod
    def unfit(cls, pairing: Pairing) -> str | None:
        """Why this method cannot distil between the sweep's teacher(s) and student (a sentence),
        or None when it fits; ``--method auto`` searches the methods that fit. Every method fits by
        default; a method with requirements (a layer map, a shared architecture) says so here."""
        return None

    @classmethod
    def option_classes(cls) -> list[type]:
        """The ``Options`` dataclasses of the class and its bases (mixins included), bases first."""
        return [vars(c)["Options"] for c in reversed(cls.__mro__) if "Options" in vars(c)]

    @classmethod
    def double_backward(cls, cfg: Config) -> bool:
        """Whether the run differentiates through the student's gradient (then the student uses
        eager attention: SDPA has no double backward; the teachers keep SDPA)."""
        return cls.second_order

    def __init__(self, cfg: Config, task: TaskSpec, student: nn.Module,
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
        loss = self.hard_loss(self.student_forward(batch).logits, batch)
        self.student_opt.update(loss)
        return {"loss": loss.detach()}

    def state_dict(self) -> dict:
        """Method state beyond the models and the engine's updaters (e.g. learnable weights)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    # ---- helpers for subclasses ------------------------------------------------------------
    def hard_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        from trainables.losses import task_loss

        return task_loss(logits, batch["labels"], self.task.is_regression)

    def cached_layers(self) -> tuple[int, ...]:
        """The teacher hidden-state indices whose [CLS] vectors the method reads (cache them too)."""
        return ()

    def teacher_outputs(self, batch: Batch, *, hidden: bool = False, grad: bool = False):
        """Each teacher's forward on ``batch`` (no graph unless ``grad``), read from the cached
        outputs when the run has them and the batch carries its training rows."""
        import torch

        from trainables.phases import phase
        from trainables.teacher_outputs import ROW

        if self.cached_teacher_outputs is not None and not grad and ROW in batch:
            with phase("teacher outputs (cached)"):
                return self.cached_teacher_outputs.outputs(batch[ROW])
        with torch.set_grad_enabled(grad), phase("teacher forward (with graph)" if grad else "teacher forward"):
            return [t(**model_inputs(batch, t), output_hidden_states=hidden) for t in self.teachers]

    def student_forward(self, batch: Batch, **kwargs):
        """The student's forward on ``batch`` (with graph)."""
        from trainables.phases import phase

        with phase("student forward"):
            return self.student(**model_inputs(batch, self.student), **kwargs)

    @staticmethod
    def mean_logits(outputs) -> torch.Tensor:
        """Multi-teacher soft targets: the average of the teachers' logits."""
        import torch

        return torch.stack([o.logits for o in outputs]).mean(dim=0)


class MetaSteps:
    """Mixin of the methods that meta-update their teacher every ``meta_interval``-th step (the
    first one included) and take plain steps in between: the step count, which step is a meta
    step, and the count in the method's state (so a resumed run keeps the rhythm)."""

    @dataclass
    class Options:
        meta_interval: int = hparam(1, "meta methods: meta-update the teacher every k steps", bounds="[1, inf)",
                                    search={"low": 1, "high": 4})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_steps = 0  # steps taken (meta or plain)

    def next_is_meta(self) -> bool:
        """Whether the coming step is a meta step."""
        return self.num_steps % self.cfg.meta_interval == 0

    def count_step(self) -> bool:
        """Count the step being taken; whether it is a meta step."""
        is_meta = self.next_is_meta()
        self.num_steps += 1
        return is_meta

    def state_dict(self) -> dict:
        return {**super().state_dict(), "num_steps": self.num_steps}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.num_steps = state.get("num_steps", 0)
