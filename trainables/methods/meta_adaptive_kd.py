"""``meta-adaptive-kd``: meta-learned adaptive KD (Obamuyide & Johnston).

MetaDistil (see :mod:`trainables.methods.metadistil`) with the loss ``alpha * L_D + beta * L_T``
(``L_D`` the soft distillation term, ``L_T`` the task loss), where ``alpha`` and ``beta`` are
learnable scalars meta-learned together with the teacher(s) by the gradient of the holdout (quiz)
task loss of the experimental student S'. Following Algorithm 1 of the paper, a meta step runs S'
through several inner mini-batches, ``num_inner_batches`` (the train batch is cut into that many
pieces, one differentiable step each), and scores it on ``num_quiz_batches`` holdout mini-batches;
the real student then takes one step on the whole batch with the updated teacher, alpha and beta.

Parametrisation of alpha and beta: plain scalars, initialised from ``alpha`` and ``beta`` (default
``1 - alpha``), updated as in lines 10–11 of Algorithm 1: a plain SGD step on the meta-gradient,
``alpha <- alpha - adaptive_lr * d L_quiz / d alpha`` (the same for beta), with their own lr
``adaptive_lr`` (no schedule, no weight decay; the teacher keeps its AdamW at ``teacher_lr``), then
projected onto ``[0, inf)`` (clamped at zero), so they stay non-negative; a non-finite
meta-gradient leaves them unchanged, so they stay finite. The meta-gradient of a loss weight is
about ``inner_lr`` times a dot product of gradients, so it is small: the default ``adaptive_lr``
is set so that alpha and beta move measurably within a short run (see the README). Deviation:
the paper takes one meta step per holdout mini-batch; here the ``num_quiz_batches`` holdout
losses are averaged into one step (the same direction, as all of them are taken at one S').
Every step's logs carry ``alpha`` and ``beta`` (the values after that step), which is their
trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainables.errors import UserError
from trainables.methods.base import Batch, distillation_space
from trainables.methods.metadistil import MetaDistil
from trainables.schema import hparam

if TYPE_CHECKING:  # torch loads where the method trains (see methods.base)
    import torch


class MetaAdaptiveKD(MetaDistil):
    name = "meta-adaptive-kd"
    reads = ("beta",)  # the initial weight of the task loss
    learned = ("alpha", "beta")  # the loss weights' first values; then meta-learned

    @dataclass
    class Options:
        num_inner_batches: int = hparam(1, "meta-adaptive-kd: inner mini-batches per meta step", bounds="[1, inf)",
                                        search={"low": 1, "high": 4})
        adaptive_lr: float = hparam(100.0, "meta-adaptive-kd: SGD lr of the loss weights alpha/beta (their "
                                           "meta-gradient is ~inner_lr x a gradient dot product, hence the large "
                                           "lr)", bounds="[0, 1e6]", search={"low": 1.0, "high": 1000.0, "log": True})

    @staticmethod
    def space(s) -> None:
        distillation_space(s)
        s("beta")
        s("adaptive_lr")

    def __init__(self, cfg, task, student, teachers):
        import torch

        super().__init__(cfg, task, student, teachers)
        self.num_inner_batches = cfg.num_inner_batches
        beta = 1.0 - cfg.alpha if cfg.beta is None else cfg.beta
        if cfg.alpha < 0 or beta < 0:
            raise UserError(f"meta-adaptive-kd needs alpha >= 0 and beta >= 0, got alpha={cfg.alpha}, "
                            f"beta={beta}")
        self.weights = torch.tensor([cfg.alpha, beta])  # [alpha, beta]; a leaf once attached

    def attach(self, student_opt, teacher_opt) -> None:
        super().attach(student_opt, teacher_opt)
        ref = next(self.student.parameters())  # the engine has placed the models by now
        self.weights = self.weights.detach().to(ref.device, ref.dtype).requires_grad_()

    @property
    def alpha(self) -> float:
        return float(self.weights[0].detach())

    @property
    def beta(self) -> float:
        return float(self.weights[1].detach())

    # ---- the loss ----------------------------------------------------------------------------------
    def weighted_loss(self, student_logits, teacher_logits, batch: Batch, weights) -> torch.Tensor:
        from trainables.losses import soft_loss

        cfg = self.cfg
        soft = soft_loss(student_logits, teacher_logits, cfg.temperature, cfg.kd_loss, self.task.is_regression)
        return weights[0] * soft + weights[1] * self.hard_loss(student_logits, batch)

    def inner_loss(self, student_logits, teacher_logits, batch: Batch) -> torch.Tensor:
        return self.weighted_loss(student_logits, teacher_logits, batch, self.weights)

    def distill_loss(self, student_logits, teacher_logits, batch: Batch) -> torch.Tensor:
        return self.weighted_loss(student_logits, teacher_logits, batch, self.weights.detach())

    # ---- meta parameters: the teachers' and the loss weights ---------------------------------------
    def meta_parameters(self) -> list[torch.Tensor]:
        return [*self.teacher_opt.params, self.weights]

    def apply_meta_gradient(self, grads) -> None:
        *teacher_grads, weight_grad = grads
        self.teacher_opt.apply(teacher_grads)
        if weight_grad is not None:
            import torch

            with torch.no_grad():  # Algorithm 1, lines 10-11: SGD, then the projection onto >= 0
                g = weight_grad.to(self.weights.dtype)
                g = torch.where(torch.isfinite(g).all(), g, torch.zeros_like(g))  # no host sync
                self.weights.sub_(self.cfg.adaptive_lr * g)
                self.weights.clamp_(min=0.0)

    def step(self, batch: Batch, quiz_batches=None) -> dict[str, float]:
        logs = super().step(batch, quiz_batches)
        weights = self.weights.detach().clone()  # read with the other logs, no sync here
        return {**logs, "alpha": weights[0], "beta": weights[1]}

    # ---- state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**super().state_dict(), "weights": self.weights.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "weights" in state:
            import torch

            with torch.no_grad():
                self.weights.copy_(state["weights"])
