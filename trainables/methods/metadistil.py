"""``metadistil``: MetaDistil (Zhou et al. 2022, "BERT Learns to Teach").

A meta step on train batch x and quiz batches q:

1. the experimental student S' takes one differentiable step on x with the KD loss and the
   current teacher(s) (see :mod:`trainables.meta`): ``inner_update=sgd`` (the paper's teaching
   experiment) θ'_S = θ_S − inner_lr · ∇ L_KD(x; θ_S, θ_T); ``inner_update=adam`` a look-ahead of
   the real student's own next AdamW step (its lr, schedule, clipping and moments,
   :func:`trainables.optim.adam_lookahead`), so S' is where the student would really go;
2. the teacher(s) take an AdamW step (lr ``teacher_lr``) on ∇_θT of the task loss of S' on q
   (dropout off), exact second-order;
3. pilot update (``pilot_update=true``): S' is discarded and the real student takes its AdamW
   step (lr ``student_lr``) on the KD loss of x with the *updated* teacher. Its forward on x is
   the one of step 1 (same parameters, same x), so only the teacher is run again.
   ``pilot_update=false`` (the paper's ablation) changes only the order of the updates: the real
   student takes the same AdamW step on the KD loss of x with the *old* teacher (the soft targets
   of step 1), then the teacher is meta-updated; the new teacher teaches from the next batch on.
   That loss is the inner loss of step 1 at θ_S (same rows, forward and teacher), so the real
   step takes the inner gradient step 1 already computed instead of a second backward.

Every ``meta_interval``-th step is a meta step (the first one included); the others are plain KD
steps with the current teacher. With several teachers the soft targets are their mean logits and
every teacher is meta-updated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainables.methods.base import Batch, MetaSteps, distillation_space
from trainables.methods.kd import KD
from trainables.schema import hparam

if TYPE_CHECKING:  # torch loads where the method trains (see methods.base)
    import torch


class MetaDistil(MetaSteps, KD):
    name = "metadistil"
    teacher_learns = True
    needs_quiz = True
    second_order = True

    @dataclass
    class Options:
        pilot_update: bool = hparam(True, "metadistil: the real student steps with the updated teacher (false: "
                                          "with the old one, the paper's ablation)", search=[True, False])
        inner_update: str = hparam("sgd", "metadistil: the experimental student's step: sgd at inner_lr, or a "
                                          "look-ahead of the real student's AdamW step", choices=["sgd", "adam"])

    @staticmethod
    def space(s) -> None:
        distillation_space(s)
        s("pilot_update")
        s("meta_interval")
        s("inner_update")

    def __init__(self, cfg, task, student, teachers):
        super().__init__(cfg, task, student, teachers)
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

    def inner_update(self) -> dict:
        """The experimental student's update, as :func:`trainables.meta.meta_gradient` takes it."""
        from trainables import meta
        from trainables.optim import adam_lookahead

        if self.cfg.inner_update == "adam":
            return {"inner_step": adam_lookahead(self.student_opt, meta.trainable_params(self.student))}
        return {"lr": self.cfg.effective_inner_lr}

    def student_gradients(self, grads_by_name: dict) -> list:
        """Gradients by parameter name (:class:`trainables.meta.MetaResult`) aligned with the
        student's Updater."""
        names = {id(p): n for n, p in self.student.named_parameters()}
        return [grads_by_name.get(names[id(p)]) for p in self.student_opt.params]

    def wants_quiz(self) -> bool:
        return self.next_is_meta()  # only meta steps use quiz batches

    def step(self, batch: Batch, quiz_batches=None) -> dict[str, float]:
        is_meta = self.count_step() and bool(quiz_batches)
        if not is_meta:
            return super().step(batch)
        import torch

        from trainables import meta

        cfg = self.cfg
        inner = meta.split_batch(batch, self.num_inner_batches)
        reuse = len(inner) == 1  # the first inner step is on the whole batch

        result = meta.meta_gradient(
            self.student, inner, self.soft_targets, self.inner_loss, quiz_batches, self.hard_loss,
            self.meta_parameters(), keep_first=reuse and cfg.pilot_update, **self.inner_update())
        if reuse and not cfg.pilot_update:
            # the real step's loss is the inner loss at θ_S (same rows, dropout mask and old
            # teacher): its gradient is the first inner gradient, already computed
            self.student_opt.apply(self.student_gradients(result.first_grads))
            self.apply_meta_gradient(result.grads)
            return {"loss": result.inner_loss, "quiz_loss": result.quiz_loss}
        student_logits = result.first_logits if reuse else self.student_forward(batch).logits
        if cfg.pilot_update:
            self.apply_meta_gradient(result.grads)
        with torch.no_grad():  # the updated teacher (pilot), or the old one on the whole batch
            teacher_logits = self.mean_logits(self.teacher_outputs(batch))
        loss = self.distill_loss(student_logits, teacher_logits, batch)
        self.student_opt.update(loss)
        if not cfg.pilot_update:
            self.apply_meta_gradient(result.grads)
        return {"loss": loss.detach(), "quiz_loss": result.quiz_loss}
