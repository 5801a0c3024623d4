"""One optimiser with its schedule: AdamW + linear warm-up/decay + gradient clipping.

Methods call :meth:`Updater.update` with a loss (or :meth:`Updater.apply` with gradients they
computed themselves, e.g. a meta-gradient); the engine builds the updaters and owns their
schedules and checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from trainables.phases import phase


def _linear_schedule(warmup: int, total: int):
    # not transformers.get_linear_schedule_with_warmup: its warm-up starts at lr 0 (step / warmup),
    # this one at lr / warmup ((step + 1) / warmup), so the first step learns; the decay is the same
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _fusable(params: Sequence[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW takes these parameters (floating point, on CPU or CUDA)."""
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)


class Updater:
    """AdamW over ``params`` with a linear warm-up/decay schedule and gradient-norm clipping.

    Parameters with one dimension (biases, LayerNorm) get no weight decay, as in BERT. ``fused``:
    torch's fused AdamW kernel where every parameter lives on a device that has one (CPU, CUDA):
    the same update as the per-parameter loop (to rounding), one pass over memory instead of a
    dozen (4-5x faster on the student's 17M parameters on one CPU thread).
    """

    name = "student"  # what it optimises, in the step's labelled parts (trainables.phases)

    def __init__(self, params: Iterable[nn.Parameter], lr: float, *, total_steps: int,
                 warmup_ratio: float = 0.0, weight_decay: float = 0.0, max_grad_norm: float = 0.0,
                 fused: bool = True, name: str = "student"):
        self.name = name
        self.params = [p for p in params if p.requires_grad]
        decay = [p for p in self.params if p.ndim > 1]
        no_decay = [p for p in self.params if p.ndim <= 1]
        groups = [g for g in ({"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
        self.optimizer = torch.optim.AdamW(groups, lr=lr, fused=fused and _fusable(self.params) or None)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _linear_schedule(int(warmup_ratio * total_steps), max(1, total_steps)))
        self.max_grad_norm = max_grad_norm

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        """Clip the gradients already in ``.grad``, step AdamW and the schedule, clear grads."""
        if self.max_grad_norm and self.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.zero_grad()

    def update(self, loss: torch.Tensor) -> None:
        """One step on ``loss`` (zero grads, backward, clip, step)."""
        with phase(f"{self.name} backward + update"):
            self.zero_grad()
            loss.backward()
            self.step()

    def apply(self, grads: Sequence[torch.Tensor | None]) -> None:
        """One step with externally computed gradients, aligned with ``self.params``."""
        with phase(f"{self.name} update"):
            self.zero_grad()
            for p, g in zip(self.params, grads, strict=True):
                p.grad = None if g is None else g.detach().to(p.dtype)
            self.step()

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def set_base_lr(self, lr: float) -> None:
        """Make ``lr`` the schedule's base lr from the current step on (moments, step count and the
        schedule's position unchanged): a state restored under another config (population-based
        training's exploit) takes the new lr. The current lr becomes ``lr`` times the schedule's
        factor at its position. A no-op where ``lr`` already is the base lr."""
        if all(base == lr for base in self.scheduler.base_lrs):
            return
        self.scheduler.base_lrs = [lr for _ in self.scheduler.base_lrs]
        for group, factor in zip(self.optimizer.param_groups, self.scheduler.lr_lambdas, strict=True):
            group["initial_lr"] = lr
            group["lr"] = lr * factor(self.scheduler.last_epoch)
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def adam_lookahead(updater: Updater, named_params: dict[str, nn.Parameter]):
    """A differentiable copy of ``updater``'s next AdamW step(s), for the experimental student.

    Returns ``step(params, grads) -> params'`` (a :data:`trainables.meta.InnerStep`) that does to
    the tensors ``params`` (named as in ``named_params``, the parameters the updater optimises) what
    :meth:`Updater.update` would do to the real parameters with gradients ``grads``: gradient-norm
    clipping, AdamW's moment updates, bias corrections and decoupled weight decay, at the current
    scheduled lr and the updater's betas/eps. The moments the student has accumulated so far are
    constants (they do not depend on the teacher); the new gradient enters the new moments, the
    clipping coefficient and the step exactly, so the look-ahead is differentiable in it. Called
    several times (several inner mini-batches), it carries its own moments and step count on
    without touching the updater's state.
    """
    group_of = {id(p): g for g in updater.optimizer.param_groups for p in g["params"]}
    state: dict[str, tuple] = {}
    for name, p in named_params.items():
        saved = updater.optimizer.state.get(p, {})
        m = saved.get("exp_avg")
        v = saved.get("exp_avg_sq")
        state[name] = (torch.zeros_like(p) if m is None else m.detach(),
                       torch.zeros_like(p) if v is None else v.detach(),
                       float(saved["step"]) if "step" in saved else 0.0)
    max_norm = updater.max_grad_norm

    def step(params: dict[str, torch.Tensor], grads: Sequence[torch.Tensor | None]) -> dict[str, torch.Tensor]:
        grads = list(grads)
        if max_norm and max_norm > 0:  # as torch.nn.utils.clip_grad_norm_
            present = [g for g in grads if g is not None]
            total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in present]))
            coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
            grads = [None if g is None else g * coef for g in grads]
        out = {}
        for (name, p), g in zip(params.items(), grads, strict=True):
            if g is None:
                out[name] = p
                continue
            group = group_of[id(named_params[name])]
            (beta1, beta2), lr, eps, wd = group["betas"], group["lr"], group["eps"], group["weight_decay"]
            m, v, t = state[name]
            t += 1
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            state[name] = (m, v, t)
            # clamp: sqrt has an infinite derivative at 0 (a coordinate with no gradient so far)
            denom = v.clamp_min(1e-30).sqrt() / math.sqrt(1 - beta2**t) + eps
            out[name] = p * (1 - lr * wd) - (lr / (1 - beta1**t)) * m / denom
        return out

    return step
