"""``finetune``: the student alone, on the task loss (also the teacher fine-tuning stage)."""

from __future__ import annotations

from trainables.methods.base import Batch, Method


class Finetune(Method):
    name = "finetune"
    uses_teacher = False

    @staticmethod
    def space(s) -> None:
        s("student_lr")

    def step(self, batch: Batch, quiz_batches=None) -> dict[str, float]:
        loss = self.hard_loss(self.student_forward(batch).logits, batch)
        self.student_opt.update(loss)
        return {"loss": loss.detach()}
