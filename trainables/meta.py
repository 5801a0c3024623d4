"""The differentiable inner step shared by the meta-distillation methods.

An *experimental student* S' is the real student's module run with other parameter values
(``torch.func.functional_call`` over a dict of tensors), so no model is copied. :func:`meta_gradient`
takes S' through one inner step per inner mini-batch, by default SGD,

    θ'_k = θ'_{k-1} − inner_lr · ∇_θ L_inner(x_k; θ'_{k-1}, teacher)        (θ'_0 = θ_S)

or any differentiable update (``inner_step``: e.g. a look-ahead of the real student's AdamW step,
:func:`trainables.optim.adam_lookahead`),

and returns the gradient of the quiz (task) loss of S' — forward with dropout off — with respect
to the *meta parameters* (the teacher's, and e.g. learnable loss weights), which reach the quiz loss
only through the inner steps.

The meta-gradient is exact: the inner steps keep their graph (``create_graph``) and autograd
differentiates through them, including the student's curvature between inner steps. This needs
double backward, hence eager attention. (A first-order mode, which took the student's Jacobian-
vector product by finite differences, was removed: it needs the same teacher backward and cost as
much as the exact meta-gradient on the bench.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from trainables.models import forward_inputs
from trainables.phases import phase

Batch = dict[str, torch.Tensor]
Params = dict[str, torch.Tensor]
#: ``loss_fn(student_logits, teacher_logits, batch) -> scalar`` (the inner objective)
InnerLoss = Callable[[torch.Tensor, torch.Tensor, Batch], torch.Tensor]
#: ``targets_fn(batch) -> teacher logits`` computed *with* graph to the meta parameters
Targets = Callable[[Batch], torch.Tensor]
#: ``quiz_fn(logits, batch) -> scalar`` (the task loss of S' on a quiz batch)
QuizLoss = Callable[[torch.Tensor, Batch], torch.Tensor]


def trainable_params(model: nn.Module) -> Params:
    """The model's own trainable parameters by name (θ_S, the start of the inner steps)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


@contextmanager
def train_mode(model: nn.Module, mode: bool) -> Iterator[None]:
    was = model.training
    model.train(mode)
    try:
        yield
    finally:
        model.train(was)


def logits(model: nn.Module, params: Params, batch: Batch) -> torch.Tensor:
    """The model's logits on ``batch`` with ``params`` in place of its parameters (buffers and
    parameters not in ``params`` are the module's own)."""
    return functional_call(model, params, args=(), kwargs=forward_inputs(model, batch), strict=False).logits


def split_batch(batch: Batch, parts: int) -> list[Batch]:
    """``batch`` cut along rows into ``parts`` mini-batches (fewer when it has fewer rows)."""
    rows = len(next(iter(batch.values())))
    parts = max(1, min(parts, rows))
    if parts == 1:
        return [batch]
    pieces = {k: torch.tensor_split(v, parts) for k, v in batch.items()}
    return [{k: v[i] for k, v in pieces.items()} for i in range(parts)]


@dataclass
class MetaResult:
    grads: list[torch.Tensor | None]   # d quiz loss / d meta parameter, aligned with the input list
    params: Params                     # θ' of S' after the inner steps (detached)
    inner_loss: torch.Tensor           # mean inner loss over the inner mini-batches (at θ'_{k-1})
    quiz_loss: torch.Tensor            # the quiz loss of S' (0-dim, detached: read when logged)
    first_logits: torch.Tensor | None  # the student's logits on the first mini-batch at θ_S, with
    #                                    their graph to the real parameters (when keep_first)
    first_grads: Params                # the inner loss's gradient on the first mini-batch at θ_S
    #                                    (detached; by parameter name, absent where unused)


def quiz_loss(model: nn.Module, params: Params, quiz_batches: Sequence[Batch], quiz_fn: QuizLoss):
    """Mean task loss of S' over the quiz batches, with dropout off."""
    with train_mode(model, False):
        return torch.stack([quiz_fn(logits(model, params, q), q) for q in quiz_batches]).mean()


#: ``step(params, grads) -> params'``: one differentiable update of S' (called once per inner
#: mini-batch, in order)
InnerStep = Callable[[Params, Sequence["torch.Tensor | None"]], Params]


def sgd_step(lr: float) -> InnerStep:
    """θ' = θ − lr · g (the papers' experimental step)."""
    def step(params: Params, grads) -> Params:
        return {n: p if g is None else p.add(g, alpha=-lr) for (n, p), g in zip(params.items(), grads)}

    return step


def meta_gradient(model: nn.Module, inner_batches: Sequence[Batch], targets_fn: Targets,
                  loss_fn: InnerLoss, quiz_batches: Sequence[Batch], quiz_fn: QuizLoss,
                  meta_params: Sequence[torch.Tensor], *, lr: float | None = None,
                  inner_step: InnerStep | None = None, keep_first: bool = False) -> MetaResult:
    """Inner steps of S' from the model's current parameters, then the quiz loss's gradient with
    respect to ``meta_params``. The real model is left unchanged. The inner update is
    ``inner_step`` (e.g. :func:`trainables.optim.adam_lookahead`), or SGD at ``lr``.
    ``keep_first`` keeps the graph of the first inner forward (at θ_S) so a following real
    student step can reuse it."""
    if (inner_step is None) == (lr is None):
        raise ValueError("meta_gradient needs exactly one of lr (SGD) and inner_step")
    return _exact(model, list(inner_batches), targets_fn, loss_fn, list(quiz_batches), quiz_fn,
                  list(meta_params), inner_step or sgd_step(lr), keep_first)


def _exact(model, inner_batches, targets_fn, loss_fn, quiz_batches, quiz_fn, meta_params, inner_step,
           keep_first) -> MetaResult:
    params = trainable_params(model)
    first, first_grads, losses = None, None, []
    for batch in inner_batches:
        targets = targets_fn(batch)
        with phase("student forward (inner)"):
            s = logits(model, params, batch)
        loss = loss_fn(s, targets, batch)
        with phase("student backward (inner, with graph)"):
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=True, allow_unused=True)
        if first_grads is None:
            first_grads = {n: g.detach() for n, g in zip(params, grads) if g is not None}
        with phase("inner step"):
            params = inner_step(params, grads)
        first = s if first is None else first
        losses.append(loss.detach())
    with phase("quiz forward"):
        quiz = quiz_loss(model, params, quiz_batches, quiz_fn)
    # only the paths to the meta parameters run: the first forward's graph survives for reuse
    with phase("meta backward"):
        meta = torch.autograd.grad(quiz, meta_params, allow_unused=True)
    return MetaResult(list(meta), {n: p.detach() for n, p in params.items()}, torch.stack(losses).mean(),
                      quiz.detach(), first if keep_first else None, first_grads)
