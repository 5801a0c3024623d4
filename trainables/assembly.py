"""Assembling one run from a :class:`DistillConfig` and its fine-tuned teachers: task, data, tokenizer,
teacher(s), student, method and engine; saving a trained model.

The layer under the teacher stage: :mod:`trainables.teacher` fine-tunes a teacher with
:func:`train_and_save`, and :func:`trainables.experiment.prepare` hands :func:`assemble` the stage's
``resolve_teachers``, so this module never imports the stage.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import datasets
import torch

from trainables import teacher_outputs
from trainables.augment import NoiseInjector
from trainables.config import DistillConfig
from trainables.data import TaskData, load_task_data, make_loader, sort_by_length, tokenize_split
from trainables.engine import Engine, Loaders, resolve_device, seed_everything
from trainables.errors import UserError
from trainables.methods import get_method
from trainables.models import (
    ModelInfo,
    accepted_inputs,
    build_student,
    describe_tokenizer,
    load_teacher,
    load_tokenizer,
    max_sequence_length,
    tokenizer_fingerprint,
)
from trainables.tasks import TaskSpec, get_task


@dataclass
class PreparedRun:
    """One assembled run: its config, task, data, tokenizer, engine (holding method and models) and
    the ids and sizes of its models."""

    cfg: DistillConfig
    task: TaskSpec
    data: TaskData
    tokenizer: object
    engine: Engine
    teacher_paths: list[str]
    student_info: ModelInfo
    teacher_info: ModelInfo | None


def holds_out_quiz(cfg: DistillConfig) -> bool:
    """Whether the run's student trains without the quiz rows: always for a method with a quiz
    set, for the others only under ``quiz_policy=all-methods``."""
    return get_method(cfg.method).needs_quiz or cfg.quiz_policy == "all-methods"


def load_task(cfg: DistillConfig) -> tuple[TaskSpec, TaskData]:
    """The task and its splits; rows are drawn with ``data_seed`` (never the training seed)."""
    task = get_task(cfg.task, cfg.text_columns, cfg.label_column, cfg.task_type, cfg.data_dir)
    data = load_task_data(task, cfg.data_dir, max_train_samples=cfg.max_train_samples,
                          max_eval_samples=cfg.max_eval_samples, quiz_fraction=cfg.quiz_fraction,
                          seed=cfg.data_seed, hold_out_quiz=holds_out_quiz(cfg))
    return task, data


def assemble(cfg: DistillConfig, teacher_paths: list[str] | None, *, progress=False,
             resolve_teachers: Callable[..., list[str]] | None = None) -> PreparedRun:
    """Everything a run needs, built and checked before the first step, with the fine-tuned
    teachers at ``teacher_paths``; when that is None, those ``resolve_teachers(cfg, progress=...)``
    returns (ignored by a method without a teacher)."""
    datasets.disable_progress_bars()  # the run's own bar and eval lines are the progress
    method_cls = get_method(cfg.method)
    task, data = load_task(cfg)
    device = resolve_device(cfg.device)
    if method_cls.uses_teacher and teacher_paths is None:
        if resolve_teachers is None:
            raise ValueError(f"method {cfg.method!r} needs teacher_paths or resolve_teachers")
        teacher_paths = resolve_teachers(cfg, progress=progress)
    teacher_paths = teacher_paths if method_cls.uses_teacher else []

    eager = method_cls.double_backward(cfg)
    tokenizer = load_tokenizer(teacher_paths[0] if teacher_paths else (cfg.student or cfg.teacher))
    check_one_tokenizer(tokenizer, teacher_paths, cfg.student or cfg.teacher)
    seed_everything(cfg.seed)  # the student's new head is initialised reproducibly
    student = build_student(cfg.teacher, cfg.student, cfg.student_layers, task, eager=eager)
    teachers = [load_teacher(p, task) for p in teacher_paths]
    vocab = len(tokenizer)
    for name, model in [("student", student)] + [(f"teacher {p}", t) for p, t in zip(teacher_paths, teachers)]:
        if model.config.vocab_size < vocab:
            raise UserError(f"the {name} has a vocabulary of {model.config.vocab_size} but the tokenizer "
                            f"has {vocab}: teacher and student must share one tokenizer")
        if "input_ids" not in accepted_inputs(model):
            raise UserError(f"the {name} ({type(model).__name__}) takes no input_ids: only text encoders "
                            "with a sequence-classification head can be distilled")
        longest = max_sequence_length(model)
        if longest is not None and cfg.max_seq_length > longest:
            raise UserError(f"max_seq_length={cfg.max_seq_length} is longer than the {name} can take "
                            f"({longest} positions); use max_seq_length <= {longest}")

    cache = teacher_outputs.usable(method_cls, cfg) and bool(teacher_paths)

    def loader(split, shuffle, batch_size):
        ds = tokenize_split(getattr(data, split), tokenizer, task, cfg.max_seq_length, rows=cache and split == "train")
        if split in ("dev", "test"):
            ds = sort_by_length(ds)  # evaluation: less padding, the same metrics
        return make_loader(ds, tokenizer, batch_size, shuffle=shuffle, seed=cfg.seed,
                           num_workers=cfg.num_workers, group_by_length=cfg.group_by_length and split == "train")

    loaders = Loaders(train=loader("train", True, cfg.batch_size), dev=loader("dev", False, 64),
                      quiz=loader("quiz", True, cfg.batch_size) if method_cls.needs_quiz else None,
                      test=loader("test", False, 64) if data.test is not None else None)
    augment = NoiseInjector(tokenizer, cfg.noise_prob, cfg.noise_token, cfg.seed) if cfg.noise_prob > 0 else None
    method = method_cls(cfg, task, student, teachers)
    if cache:
        ordered = loader("train", False, 64)
        method.cached_teacher_outputs = teacher_outputs.load_or_compute(
            cfg, teacher_paths, [t.to(device) for t in teachers], ordered, data.train["idx"], device,
            layers=method.cached_layers())
    engine = Engine(cfg, task, method, loaders, device, augment=augment, progress=progress)
    return PreparedRun(cfg, task, data, tokenizer, engine, teacher_paths,
                    ModelInfo.of(student, cfg.student or f"{cfg.teacher}[:{cfg.student_layers}]"),
                    ModelInfo.of(teachers[0], teacher_paths[0]) if teachers else None)


def check_one_tokenizer(tokenizer, teacher_paths: list[str], student_source: str) -> None:
    """Teachers and student must tokenise alike (soft targets and student see the same ids):
    every teacher's tokenizer, and the student source's where it has one, must be the run's
    ``tokenizer`` (same token -> id map and the same encoding, not merely the same size)."""
    reference = tokenizer_fingerprint(tokenizer)
    others = [(f"teacher {p}", p) for p in teacher_paths[1:]]
    if teacher_paths and student_source:
        others.append((f"student source {student_source}", student_source))
    for role, source in others:
        try:
            other = load_tokenizer(source)
        except UserError:
            if role.startswith("teacher"):
                raise
            continue  # a student given without a tokenizer: it uses the teacher's
        if tokenizer_fingerprint(other) != reference:
            raise UserError(f"different tokenizers: {describe_tokenizer(tokenizer)} (teacher {teacher_paths[0]}) "
                            f"and {describe_tokenizer(other)} ({role}); teachers and student must share one "
                            "tokenizer (same vocabulary and encoding)")


def save_model(model: torch.nn.Module, tokenizer, path: str) -> str:
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def train_and_save(cfg: DistillConfig, path: str, *, progress=False) -> dict:
    """Train ``cfg`` (used for the teacher stage) and save its best student at ``path``."""
    prep = assemble(cfg, [], progress=progress)
    result = prep.engine.fit()
    save_model(prep.engine.selected_student_model(), prep.tokenizer, path)
    return {**{k: v for k, v in result.selected.items() if k.startswith("eval_")},
            **prep.engine.test_metrics()}
