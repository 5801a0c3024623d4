"""A toy method, added the way the README says a method is added: this one file (the class, its
own option, its search space and baseline) plus one registry line (``register(ToyKD)``, in the
test that uses it; in the project, one line in ``trainables/methods/__init__.py``).

``toy-kd`` is KD whose soft targets are the teacher's logits scaled by ``toy_gamma``.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainables.methods.base import Batch, model_inputs
from trainables.methods.kd import KD
from trainables.schema import hparam


class ToyKD(KD):
    name = "toy-kd"

    @dataclass
    class Options:
        toy_gamma: float = hparam(0.5, "toy-kd: scale of the teacher's logits in the soft targets",
                                  bounds="[0, 1]", search={"low": 0.1, "high": 1.0})

    #: searched: lambda and gamma (over its schema range); alpha over a range of its own
    space = {"student_lr": None, "toy_gamma": None, "alpha": {"low": 0.2, "high": 0.8}}
    baseline = {"toy_gamma": 0.25}

    def step(self, batch: Batch, quiz_batches=None) -> dict[str, float]:
        teacher_logits = self.cfg.toy_gamma * self.mean_logits(self.teacher_outputs(batch))
        student_logits = self.student(**model_inputs(batch, self.student)).logits
        loss = self.distill_loss(student_logits, teacher_logits, batch)
        self.student_opt.update(loss)
        return {"loss": loss.detach()}
