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

Two modes:

* exact (default): the inner steps keep their graph (``create_graph``), and autograd
  differentiates through them, including the student's curvature between inner steps. Needs
  double backward, hence eager attention.
* ``first_order``: no double backward. For one inner step the meta-gradient factorises through
  the logits: d quiz/d meta = −inner_lr · ∂/∂meta ⟨∇_s L_inner(s, t), J_s v⟩, with v the gradient
  of the quiz loss at θ' and J_s v the change of the student's logits along v, taken here by a
  central finite difference (two forwards, same dropout masks). Across several inner steps v is
  carried back unchanged, i.e. the student's Hessian terms are dropped (as first-order MAML).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from trainables.models import forward_inputs

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


@torch.no_grad()
def load_params(model: nn.Module, params: Params) -> None:
    """Copy ``params`` (e.g. θ' of S') into the model's own parameters."""
    own = dict(model.named_parameters())
    for name, value in params.items():
        own[name].copy_(value)


@dataclass
class MetaResult:
    grads: list[torch.Tensor | None]   # d quiz loss / d meta parameter, aligned with the input list
    params: Params                     # θ' of S' after the inner steps (detached)
    inner_loss: torch.Tensor           # mean inner loss over the inner mini-batches (at θ'_{k-1})
    quiz_loss: torch.Tensor            # the quiz loss of S' (0-dim, detached: read when logged)
    first_logits: torch.Tensor | None  # the student's logits on the first mini-batch at θ_S, with
    #                                    their graph to the real parameters (when keep_first)


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
                  inner_step: InnerStep | None = None, first_order: bool = False,
                  keep_first: bool = False) -> MetaResult:
    """Inner steps of S' from the model's current parameters, then the quiz loss's gradient with
    respect to ``meta_params``. The real model is left unchanged. The inner update is
    ``inner_step`` (e.g. :func:`trainables.optim.adam_lookahead`), or SGD at ``lr``.
    ``keep_first`` keeps the graph of the first inner forward (at θ_S) so a following real
    student step can reuse it. ``first_order`` needs the SGD step (its factorisation assumes an
    update linear in the gradient)."""
    if (inner_step is None) == (lr is None):
        raise ValueError("meta_gradient needs exactly one of lr (SGD) and inner_step")
    if first_order:
        if inner_step is not None:
            raise ValueError("first_order meta-gradients need the SGD inner step (lr=...)")
        return _first_order(model, list(inner_batches), targets_fn, loss_fn, list(quiz_batches), quiz_fn,
                            list(meta_params), lr, keep_first)
    return _exact(model, list(inner_batches), targets_fn, loss_fn, list(quiz_batches), quiz_fn,
                  list(meta_params), inner_step or sgd_step(lr), keep_first)


def _exact(model, inner_batches, targets_fn, loss_fn, quiz_batches, quiz_fn, meta_params, inner_step,
           keep_first) -> MetaResult:
    params = trainable_params(model)
    first, losses = None, []
    for batch in inner_batches:
        s = logits(model, params, batch)
        loss = loss_fn(s, targets_fn(batch), batch)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True, allow_unused=True)
        params = inner_step(params, grads)
        first = s if first is None else first
        losses.append(loss.detach())
    quiz = quiz_loss(model, params, quiz_batches, quiz_fn)
    # only the paths to the meta parameters run: the first forward's graph survives for reuse
    meta = torch.autograd.grad(quiz, meta_params, allow_unused=True)
    return MetaResult(list(meta), {n: p.detach() for n, p in params.items()}, torch.stack(losses).mean(),
                      quiz.detach(), first if keep_first else None)


# ---- first-order mode --------------------------------------------------------------------------

def _rng_state(device: torch.device):
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


@contextmanager
def _replay_rng(state, device: torch.device) -> Iterator[None]:
    """Run a block with the random state of ``state`` (same dropout masks), then restore."""
    cpu, cuda = state
    with torch.random.fork_rng(devices=[device] if cuda is not None else []):
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)
        yield


@torch.no_grad()
def logit_jvp(model: nn.Module, params: Params, batch: Batch, direction: Params, rng) -> torch.Tensor:
    """J_s·direction: the change of the logits at ``params`` along ``direction``, by a central
    finite difference in full precision, with the dropout masks of the forward that drew ``rng``."""
    dtype = next(iter(params.values())).dtype
    device = next(iter(params.values())).device
    # a 0-dim device tensor: no host synchronisation (a zero direction gives a zero difference)
    norm = torch.sqrt(sum(d.double().square().sum() for d in direction.values()))
    eps = (torch.finfo(dtype).eps ** (1 / 3) / norm.clamp_min(1e-30)).to(dtype)
    outs = []
    for sign in (1.0, -1.0):
        moved = {n: p + sign * eps * direction[n] if n in direction else p for n, p in params.items()}
        with _replay_rng(rng, device), torch.autocast(device.type, enabled=False):
            outs.append(logits(model, moved, batch).to(dtype))
    return (outs[0] - outs[1]) / (2 * eps)


def _first_order(model, inner_batches, targets_fn, loss_fn, quiz_batches, quiz_fn, meta_params, lr,
                 keep_first) -> MetaResult:
    params: Params = trainable_params(model)
    device = next(iter(params.values())).device
    first, losses, records = None, [], []
    for i, batch in enumerate(inner_batches):
        t = targets_fn(batch)
        rng = _rng_state(device)
        s = logits(model, params, batch)
        s_leaf = s.detach().requires_grad_()
        loss = loss_fn(s_leaf, t, batch)
        # u = dL/ds keeps its graph to the teacher (and loss weights): the meta-gradient's path
        (u,) = torch.autograd.grad(loss, s_leaf, create_graph=True)
        grads = torch.autograd.grad(s, list(params.values()), grad_outputs=u.detach(), allow_unused=True,
                                    retain_graph=keep_first and i == 0)
        records.append((batch, {n: p.detach() for n, p in params.items()}, rng, u))
        params = {n: p.detach().requires_grad_() for n, p in sgd_step(lr)(params, grads).items()}
        first = s if first is None else first
        losses.append(loss.detach())
    quiz = quiz_loss(model, params, quiz_batches, quiz_fn)
    v = dict(zip(params, torch.autograd.grad(quiz, list(params.values()), allow_unused=True)))
    v = {n: g for n, g in v.items() if g is not None}
    surrogate = sum((u * logit_jvp(model, start, batch, v, rng).to(u.dtype)).sum()
                    for batch, start, rng, u in records)
    meta = torch.autograd.grad(-lr * surrogate, meta_params, allow_unused=True)
    return MetaResult(list(meta), {n: p.detach() for n, p in params.items()}, torch.stack(losses).mean(),
                      quiz.detach(), first if keep_first else None)
