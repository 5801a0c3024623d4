"""``kd``: Hinton et al. (2015) knowledge distillation from a fixed teacher.

``loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * task_loss``; ``kd_loss=mse``
uses MSE between logits for the soft term; regression tasks use MSE to the teacher's output.
With several teachers the soft targets are the mean of their logits.
"""

from __future__ import annotations

from trainables.methods.base import Batch, Method, distillation_space


class KD(Method):
    name = "kd"
    space = staticmethod(distillation_space)

    def distill_loss(self, student_logits, teacher_logits, batch: Batch):
        from trainables.losses import kd_loss

        cfg = self.cfg
        return kd_loss(student_logits, teacher_logits, batch["labels"], alpha=cfg.alpha,
                       temperature=cfg.temperature, kind=cfg.kd_loss, regression=self.task.is_regression)

    def step(self, batch: Batch, quiz_batches=None) -> dict[str, float]:
        teacher_logits = self.mean_logits(self.teacher_outputs(batch))
        student_logits = self.student_forward(batch).logits
        loss = self.distill_loss(student_logits, teacher_logits, batch)
        self.student_opt.update(loss)
        return {"loss": loss.detach()}
