"""One configuration for one distillation run.

:class:`DistillConfig` is the single source of truth for names: the CLI's ``--set``, the search
spaces, the MLflow params and the analysis columns all use its field names. Fields are in two
groups (field metadata ``group``):

* ``hparam``: hyperparameters, settable with ``--set key=value`` and searchable by a sweep;
* ``setup``: what to train on and with which models/infrastructure (task, data dir, model ids,
  device, ...), set by dedicated CLI options.

``choices`` in a field's metadata lists the valid values of a categorical field.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from trainables.errors import UserError

DEFAULT_TEACHER = "all-MiniLM-L6-v2"


def _hp(default, choices=None, help="", bounds=None):
    """A hyperparameter field; ``bounds`` is its valid interval (``"[0, 1]"``, ``"(0, inf)"``;
    None allowed where the default is None), checked by DistillConfig and so by --set and --space."""
    return field(default=default, metadata={"group": "hparam", "choices": choices, "help": help,
                                            "bounds": bounds})


def _setup(default, choices=None, help=""):
    return field(default=default, metadata={"group": "setup", "choices": choices, "help": help})


#: options that existed once, with why they went (a clear error instead of "unknown key")
REMOVED = {
    "first_order": "the first-order meta-gradient cost as much as the exact one (it needs the same "
                   "teacher backward and a Jacobian-vector product of the student) and was an "
                   "approximation; metadistil and meta-adaptive-kd always use the exact meta-gradient",
}

@dataclass
class DistillConfig:
    # ---- what and where -------------------------------------------------------------------
    method: str = _setup("kd", help="registered method name")
    task: str = _setup("sst2", help="task name from the task table, or a folder (bring your own)")
    data_dir: str | None = _setup(None, help="local data dir laid out as <dir>/<task>/{train,dev}.tsv")
    text_columns: str | None = _setup(None, help="bring-your-own task: text column(s), comma-separated")
    label_column: str | None = _setup(None, help="bring-your-own task: label column")
    task_type: str | None = _setup(None, choices=["classification", "regression"],
                                   help="bring-your-own task: how to read the labels (default: inferred)")
    teacher: str = _setup(DEFAULT_TEACHER, help="teacher backbone: HF name or path")
    teachers: str | None = _setup(None, help="multi-teacher: comma-separated fine-tuned teacher paths/names")
    teacher_checkpoint: str | None = _setup(None, help="an already fine-tuned teacher (skips fine-tuning)")
    student: str | None = _setup(None, help="student model name/path (default: first k teacher layers)")
    max_train_samples: int | None = _setup(None, help="cap on training rows (before the quiz split)")
    max_eval_samples: int | None = _setup(None, help="cap on dev rows")
    quiz_fraction: float = _setup(0.1, help="fraction of the training file held out as the quiz set")
    quiz_policy: str = _setup("meta-only", choices=["meta-only", "all-methods"],
                              help="meta-only: methods without a quiz set train on the whole training file; "
                                   "all-methods: every method trains on the rows left after the quiz split")
    data_seed: int = _setup(42, help="seed of the training subsample and the quiz split (the teacher stage's too)")
    select: str = _setup("best-dev", choices=["best-dev", "final"],
                         help="which student is saved and scored on test: the best dev evaluation or the last")
    device: str = _setup("auto", choices=["auto", "cpu", "cuda"])
    bf16: bool = _setup(False, help="bf16 autocast for forward passes")
    eval_steps: int = _setup(0, help="evaluate every N steps (0: once per epoch)")
    eval_teacher: bool = _setup(False, help="also evaluate the (learning) teacher at each evaluation")
    teacher_epochs: int = _setup(3, help="epochs of the teacher fine-tuning stage")
    teacher_finetune_lr: float = _setup(1e-4, help="lr of the teacher fine-tuning stage")
    teacher_batch_size: int = _setup(32, help="batch size of the teacher fine-tuning stage")
    teacher_seed: int = _setup(42, help="seed of the (first) fine-tuned teacher")
    cache_dir: str | None = _setup(None, help="fine-tuned teacher cache (default $TUNER_CACHE_DIR or ~/.cache/distill-tune)")
    output_dir: str | None = _setup(None, help="where the run saves the student (and a meta-learned teacher)")
    num_workers: int = _setup(0, help="DataLoader workers")
    group_by_length: bool = _setup(True, help="training batches of rows of similar length (less padding)")
    fused_optimizer: bool = _setup(True, help="torch's fused AdamW kernel (false: its per-parameter loop, "
                                              "the update of runs before it, to rounding)")
    teacher_output_cache: bool = _setup(True, help="frozen teachers (kd, pkd): compute their outputs on the "
                                                   "training rows once and read them instead of running them")

    # ---- hyperparameters ------------------------------------------------------------------
    student_lr: float = _hp(1e-4, help="student learning rate (lambda)", bounds="(0, 1]")
    teacher_lr: float = _hp(1e-5, help="teacher learning rate (mu) for methods whose teacher learns", bounds="(0, 1]")
    inner_lr: float | None = _hp(None, help="lr of the experimental (pilot) student step; default student_lr", bounds="(0, 1]")
    alpha: float = _hp(0.5, help="weight of the distillation term", bounds="[0, 1]")
    beta: float | None = _hp(None, help="pkd: hidden-state loss weight; meta-adaptive-kd: task-loss weight", bounds="[0, inf)")
    temperature: float = _hp(2.0, help="softmax temperature T", bounds="(0, inf)")
    batch_size: int = _hp(32)
    epochs: int = _hp(3)
    seed: int = _hp(42)
    student_layers: int = _hp(3, help="layers of the default truncated student")
    max_seq_length: int = _hp(128)
    kd_loss: str = _hp("kl", choices=["kl", "mse", "mse_prob"],
                       help="soft loss: kl (T^2 KL), mse (logits), mse_prob (T^2 MSE of softened probabilities)")
    teacher_dropout: bool = _hp(False, help="teachers run with dropout on in their training forwards (every method)")
    pkd_layer_map: str = _hp("skip", choices=["skip", "last"])
    update_strategy: str = _hp("skip", choices=["first", "last", "skip", "both"])
    reptile_map_embeddings: bool = _hp(True, help="reptile-distil: also pull embeddings, pooler and classifier")
    reptile_update: str = _hp("plain", choices=["plain", "adam"])
    pilot_update: bool = _hp(True)
    inner_update: str = _hp("sgd", choices=["sgd", "adam"],
                            help="the experimental student's step: sgd at inner_lr, or a look-ahead of "
                                 "the real student's AdamW step")
    meta_interval: int = _hp(1, help="meta-update the teacher every k steps")
    num_quiz_batches: int = _hp(1)
    num_inner_batches: int = _hp(1, help="meta-adaptive-kd: inner mini-batches per meta step")
    adaptive_lr: float = _hp(100.0, help="meta-adaptive-kd: SGD lr of the loss weights alpha/beta (their "
                             "meta-gradient is ~inner_lr x a gradient dot product, hence the large lr)",
                             bounds="[0, 1e6]")
    noise_prob: float = _hp(0.0, help="probability of replacing a token by noise", bounds="[0, 1]")
    noise_token: str = _hp("mask", choices=["mask", "unk", "random"])
    warmup_epochs: int = _hp(0, help="epochs of task-only student training before distillation")
    num_teachers: int = _hp(1, help="teachers fine-tuned with different seeds (multi-teacher)")
    lr_warmup_ratio: float = _hp(0.1, help="fraction of steps of linear lr warm-up", bounds="[0, 1]")
    weight_decay: float = _hp(0.01, bounds="[0, inf)")
    max_grad_norm: float = _hp(1.0, bounds="[0, inf)")

    # ---------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        if self.data_dir is None:
            self.data_dir = os.environ.get("TUNER_DATA_DIR") or None
        self._absolutise_paths()
        for f in dataclasses.fields(self):
            setattr(self, f.name, coerce(f, getattr(self, f.name)))
        for f in dataclasses.fields(self):
            if f.metadata.get("bounds") and getattr(self, f.name) is not None:
                check_bounds(f.name, getattr(self, f.name), f.metadata["bounds"])
        for name in ("batch_size", "epochs", "student_layers", "max_seq_length", "meta_interval",
                     "num_quiz_batches", "num_inner_batches", "num_teachers"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.quiz_fraction < 1.0:
            raise UserError(f"quiz_fraction must be in (0, 1), got {self.quiz_fraction}")

    def _absolutise_paths(self) -> None:
        """Local paths become absolute: Ray Tune trials run in their own working directories."""
        from trainables.tasks import TASKS

        for name in ("data_dir", "task", "teacher", "teacher_checkpoint", "student"):
            value = getattr(self, name)
            if value and os.path.exists(value) and not (name == "task" and value.lower() in TASKS):
                setattr(self, name, os.path.abspath(value))
        if self.teachers:
            self.teachers = ",".join(os.path.abspath(p) if os.path.exists(p) else p
                                     for p in (t.strip() for t in self.teachers.split(",")) if p)
        for name in ("cache_dir", "output_dir"):
            if getattr(self, name):
                setattr(self, name, os.path.abspath(os.path.expanduser(getattr(self, name))))

    # ---- helpers ---------------------------------------------------------------------------
    @property
    def effective_inner_lr(self) -> float:
        return self.student_lr if self.inner_lr is None else self.inner_lr

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DistillConfig":
        """Build from a dict, rejecting unknown keys (with the valid ones in the message)."""
        names = field_names()
        unknown = sorted(set(values) - set(names))
        for key in unknown:
            if key in REMOVED:
                raise UserError(f"config key {key!r} was removed: {REMOVED[key]}")
        if unknown:
            raise UserError(f"unknown config key(s) {', '.join(unknown)}; valid: {', '.join(names)}")
        return cls(**values)

    def replace(self, **changes: Any) -> "DistillConfig":
        return dataclasses.replace(self, **changes)

    def with_overrides(self, assignments: list[str]) -> "DistillConfig":
        """Apply ``--set key=value`` strings (hyperparameters only)."""
        return self.replace(**parse_assignments(assignments))


# ---- field introspection and typed parsing ----------------------------------------------------

_INTERVAL = re.compile(r"^([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])$")


def parse_bounds(bounds: str) -> tuple[float, float, bool, bool]:
    """``"(0, 1]"`` -> ``(low, high, low_open, high_open)`` = ``(0.0, 1.0, True, False)``."""
    m = _INTERVAL.match(bounds)
    if m is None:
        raise ValueError(f"bad bounds {bounds!r}; expected an interval such as '[0, 1]' or '(0, inf)'")
    return float(m.group(2)), float(m.group(3)), m.group(1) == "(", m.group(4) == ")"


def check_bounds(name: str, value: float, bounds: str) -> None:
    """A UserError unless ``value`` lies in the interval ``bounds`` (``"(0, 1]"``, ``"[0, inf)"``)."""
    low, high, low_open, high_open = parse_bounds(bounds)
    if (low < value if low_open else low <= value) and (value < high if high_open else value <= high):
        return
    if math.isinf(high):
        rule = f"{'>' if low_open else '>='} {low:g}"
    else:
        rule = f"in {bounds}"
    raise UserError(f"{name} must be {rule}, got {value}")


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(DistillConfig)}


def field_names(group: str | None = None) -> list[str]:
    return [n for n, f in _fields().items() if group is None or f.metadata["group"] == group]


HPARAMS: tuple[str, ...] = tuple(field_names("hparam"))


def field_choices(name: str) -> list | None:
    return _fields()[name].metadata.get("choices")


_TYPE_HINTS: dict[str, Any] | None = None


def _base_type(f: dataclasses.Field) -> tuple[type, bool]:
    """(scalar type, optional?) of a field, from its annotation."""
    global _TYPE_HINTS
    if _TYPE_HINTS is None:
        _TYPE_HINTS = typing.get_type_hints(DistillConfig)
    hint = _TYPE_HINTS[f.name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    return hint, False


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def coerce(f: dataclasses.Field, value: Any) -> Any:
    """Convert ``value`` (possibly a CLI string) to the field's type, or raise a UserError."""
    typ, optional = _base_type(f)
    if value is None or (optional and isinstance(value, str) and value.lower() in {"none", "null", ""}):
        if optional:
            return None
        raise UserError(f"{f.name} may not be empty")
    try:
        if typ is bool:
            if isinstance(value, str):
                low = value.lower()
                if low not in _TRUE | _FALSE:
                    raise ValueError
                out = low in _TRUE
            elif isinstance(value, (bool, int)) and value in (0, 1):
                out = bool(value)
            else:
                raise ValueError
        elif typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            out = int(value) if not isinstance(value, str) else int(value.strip())
        elif typ is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
        else:
            out = str(value)
    except (TypeError, ValueError):
        raise UserError(f"{f.name}={value!r} is not a valid {typ.__name__}"
                        + (" (or none)" if optional else "")) from None
    choices = f.metadata.get("choices")
    if choices and out not in choices:
        raise UserError(f"{f.name}={out!r} is not one of: {', '.join(map(str, choices))}")
    return out


def parse_assignments(assignments: list[str], group: str = "hparam") -> dict[str, Any]:
    """Parse ``key=value`` strings into typed values for fields of ``group``."""
    fields = _fields()
    valid = field_names(group)
    out: dict[str, Any] = {}
    for item in assignments or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise UserError(f"--set expects key=value, got {item!r}")
        if key in REMOVED:
            raise UserError(f"--set {key}: the option was removed: {REMOVED[key]}")
        if key not in valid:
            raise UserError(f"unknown hyperparameter {key!r} in --set; valid: {', '.join(valid)}")
        out[key] = coerce(fields[key], raw.strip())
    return out
