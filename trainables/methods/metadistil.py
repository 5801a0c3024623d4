"""``metadistil``: MetaDistil (Zhou et al. 2022, "BERT Learns to Teach").

A meta step on train batch x and quiz batches q:

1. the experimental student S' takes one differentiable SGD step on x with the KD loss and the
   current teacher(s): θ'_S = θ_S − inner_lr · ∇ L_KD(x; θ_S, θ_T) (see :mod:`trainables.meta`);
2. the teacher(s) take an AdamW step (lr ``teacher_lr``) on ∇_θT of the task loss of S' on q
   (dropout off), exact second-order unless ``first_order``;
3. pilot update (``pilot_update=true``): S' is discarded and the real student takes its AdamW
   step (lr ``student_lr``) on the KD loss of x with the *updated* teacher. Its forward on x is
   the one of step 1 (same parameters, same x), so only the teacher is run again.
   ``pilot_update=false`` (the paper's ablation): the real student becomes S' (its update is the
   inner SGD step with ``inner_lr``); the new teacher teaches from the next batch on.

Every ``meta_interval``-th step is a meta step (the first one included); the others are plain KD
steps with the current teacher. With several teachers the soft targets are their mean logits and
every teacher is meta-updated.
"""

from __future__ import annotations

import torch

from trainables import meta
from trainables.methods.base import Batch, model_inputs
from trainables.methods.kd import KD


class MetaDistil(KD):
    name = "metadistil"
    teacher_learns = True
    needs_quiz = True
    second_order = True

    def __init__(self, cfg, task, student, teachers):
        super().__init__(cfg, task, student, teachers)
        self.num_steps = 0           # steps taken (meta or plain), for meta_interval
        self.num_inner_batches = 1   # mini-batches the train batch is cut into for S'

    # ---- what subclasses change ----------------------------------------------------------------
    def inner_loss(self, student_logits, teacher_logits, batch: Batch) -> torch.Tensor:
        """The loss of S' in the inner step, differentiable in the meta parameters."""
        return self.distill_loss(student_logits, teacher_logits, batch)

    def meta_parameters(self) -> list[torch.Tensor]:
        return list(self.teacher_opt.params)

    def apply_meta_gradient(self, grads: list[torch.Tensor | None]) -> None:
        self.teacher_opt.apply(grads)

    # ---- the step --------------------------------------------------------------------------------
    def soft_targets(self, batch: Batch) -> torch.Tensor:
        """Mean teacher logits with their graph to the teachers' parameters."""
        return self.mean_logits(self.teacher_outputs(batch, grad=True))

    def step(self, batch: Batch, quiz_batches=None) -> dict[str, float]:
        is_meta = self.num_steps % self.cfg.meta_interval == 0 and bool(quiz_batches)
        self.num_steps += 1
        if not is_meta:
            return super().step(batch)
        cfg = self.cfg
        inner = meta.split_batch(batch, self.num_inner_batches)
        reuse = cfg.pilot_update and len(inner) == 1
        result = meta.meta_gradient(
            self.student, inner, self.soft_targets, self.inner_loss, quiz_batches, self.hard_loss,
            self.meta_parameters(), lr=cfg.effective_inner_lr, first_order=cfg.first_order,
            keep_first=reuse)
        self.apply_meta_gradient(result.grads)
        if cfg.pilot_update:
            with torch.no_grad():
                teacher_logits = self.mean_logits(self.teacher_outputs(batch))
            student_logits = result.first_logits if reuse else self.student(**model_inputs(batch, self.student)).logits
            loss = self.distill_loss(student_logits, teacher_logits, batch)
            self.student_opt.update(loss)
            loss = loss.item()
        else:
            meta.load_params(self.student, result.params)
            loss = result.inner_loss
        return {"loss": loss, "quiz_loss": result.quiz_loss}

    def state_dict(self) -> dict:
        return {"num_steps": self.num_steps}

    def load_state_dict(self, state: dict) -> None:
        self.num_steps = state.get("num_steps", 0)
