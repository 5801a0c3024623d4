"""One optimiser with its schedule: AdamW + linear warm-up/decay + gradient clipping.

Methods call :meth:`Updater.update` with a loss (or :meth:`Updater.apply` with gradients they
computed themselves, e.g. a meta-gradient); the engine builds the updaters and owns their
schedules and checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn


def _linear_schedule(warmup: int, total: int):
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


class Updater:
    """AdamW over ``params`` with a linear warm-up/decay schedule and gradient-norm clipping.

    Parameters with one dimension (biases, LayerNorm) get no weight decay, as in BERT.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, *, total_steps: int,
                 warmup_ratio: float = 0.0, weight_decay: float = 0.0, max_grad_norm: float = 0.0):
        self.params = [p for p in params if p.requires_grad]
        decay = [p for p in self.params if p.ndim > 1]
        no_decay = [p for p in self.params if p.ndim <= 1]
        groups = [g for g in ({"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
        self.optimizer = torch.optim.AdamW(groups, lr=lr)
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
        self.zero_grad()
        loss.backward()
        self.step()

    def apply(self, grads: Sequence[torch.Tensor | None]) -> None:
        """One step with externally computed gradients, aligned with ``self.params``."""
        self.zero_grad()
        for p, g in zip(self.params, grads, strict=True):
            p.grad = None if g is None else g.detach().to(p.dtype)
        self.step()

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
