"""Helpers for the meta-method tests: tiny fp64 models in eval mode (a deterministic function),
random token batches, simple updaters, and a plain re-implementation of "one inner SGD step, then
the quiz loss" that shares no code with :mod:`trainables.meta`."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_models import make_tiny_bert
from torch import nn

from trainables.config import DistillConfig
from trainables.losses import kd_loss, soft_loss, task_loss
from trainables.methods import get_method
from trainables.models import load_classifier
from trainables.optim import Updater
from trainables.tasks import get_task

TASK = get_task("sst2")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Import into a test module to run it with one intra-op thread: with these small models one
    thread is several times faster than two competing with other processes on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_classifier(root, name: str, layers: int = 2, hidden: int = 32, seed: int = 0,
                    eager: bool = True) -> nn.Module:
    """A tiny BERT classifier in fp64, eval mode (no dropout); eager attention unless ``eager=False``
    (SDPA, as the product's teachers)."""
    path = make_tiny_bert(str(root / name), layers=layers, hidden=hidden, seed=seed)
    torch.manual_seed(seed + 100)  # the classification head
    return load_classifier(path, TASK, eager=eager).double().eval()


def random_batch(generator: torch.Generator, rows: int = 4, length: int = 8) -> dict[str, torch.Tensor]:
    ids = torch.randint(1000, 3000, (rows, length), generator=generator)
    ids[:, 0] = 101  # [CLS]
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[1, length - 3:] = 0  # one padded row
    ids[1, length - 3:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
            "labels": torch.randint(0, 2, (rows,), generator=generator)}


def inputs(batch):
    return {k: v for k, v in batch.items() if k != "labels"}


class SGDUpdater(Updater):
    """An Updater doing plain SGD (no schedule, no clipping), so updates are easy to predict."""

    def __init__(self, params, lr: float):
        self.params = [p for p in params if p.requires_grad]
        self.optimizer = torch.optim.SGD(self.params, lr=lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0)
        self.max_grad_norm = 0.0


class CaptureUpdater(SGDUpdater):
    """Records the gradients handed to :meth:`apply` and leaves the parameters alone."""

    def apply(self, grads):
        self.grads = list(grads)


def make_method(name: str, student, teachers, *, student_opt=None, teacher_opt=None, **cfg) -> object:
    """A method wired as the engine would (teachers trainable when they learn), with the given
    updaters (default: SGD, lr 0.1)."""
    config = DistillConfig(method=name, **cfg)
    method = get_method(name)(config, TASK, student, teachers)
    for t in teachers:
        t.requires_grad_(method.teacher_learns)
    params = [p for t in teachers for p in t.parameters()]
    method.attach(student_opt or SGDUpdater(student.parameters(), 0.1),
                  (teacher_opt or SGDUpdater(params, 0.1)) if method.teacher_learns else None)
    return method


def mix_loss(student_logits, teacher_logits, labels, alpha: float, beta: float | None, temperature: float):
    """``alpha * soft + beta * task`` (``beta=None``: Hinton's ``1 - alpha``)."""
    if beta is None:
        return kd_loss(student_logits, teacher_logits, labels, alpha=alpha, temperature=temperature)
    return alpha * soft_loss(student_logits, teacher_logits, temperature) + beta * task_loss(
        student_logits, labels, False)


def sgd_copy(student, teachers, batches, lr: float, alpha: float, beta: float | None = None,
             temperature: float = 2.0) -> nn.Module:
    """A copy of ``student`` after one plain SGD step per batch on the distillation loss."""
    s = copy.deepcopy(student)
    for batch in batches:
        with torch.no_grad():
            t = torch.stack([teacher(**inputs(batch)).logits for teacher in teachers]).mean(0)
        loss = mix_loss(s(**inputs(batch)).logits, t, batch["labels"], alpha, beta, temperature)
        grads = torch.autograd.grad(loss, list(s.parameters()))
        with torch.no_grad():
            for p, g in zip(s.parameters(), grads):
                p -= lr * g
    return s


@torch.no_grad()
def quiz_loss_of(model, quiz_batches) -> float:
    model.eval()
    return float(torch.stack([task_loss(model(**inputs(q)).logits, q["labels"], False)
                              for q in quiz_batches]).mean())


def central_difference(fn, tensor: torch.Tensor, index: int, eps: float = 1e-6) -> float:
    """(fn() at tensor[index] + eps − fn() at tensor[index] − eps) / 2 eps, restoring the entry."""
    flat = tensor.data.view(-1)
    old = flat[index].item()
    flat[index] = old + eps
    plus = fn()
    flat[index] = old - eps
    minus = fn()
    flat[index] = old
    return (plus - minus) / (2 * eps)


def relative_error(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)
