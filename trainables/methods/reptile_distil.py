"""``reptile-distil``: ReptileDistil (Ma et al.), a first-order meta-distillation.

A meta step on batch x:

1. a copy S' of the student takes one SGD step on x with the KD loss and the current teacher:
   θ'_S = θ_S − inner_lr · ∇ L_KD(x; θ_S, θ_T);
2. each teacher moves toward S' on its *mapped* parameters:
   ``reptile_update=plain`` (the paper's formula) θ_T ← θ_T − μ (θ_T − θ'_S), with the constant
   μ = ``reptile_mu`` (default ``teacher_lr``: the name searched and recorded since the first
   sweeps, so they stay comparable); ``reptile_update=adam`` (as the authors' code) feeds θ_T − θ'_S to the
   teacher's AdamW as its gradient (lr ``teacher_lr`` on the engine's schedule, with its clipping
   and weight decay). Unmapped teacher parameters never change;
3. the real student takes its AdamW step on the KD loss of x with the updated teacher (reusing
   the forward of step 1: same parameters, same x).

Mapping (:func:`parameter_map`): encoder layers through
:func:`trainables.layer_maps.layer_map` (``update_strategy`` first/last/skip/both; under ``both``
a student layer is the target of several teacher layers), everything else (embeddings, pooler,
classifier) by identical name. The paper's layer maps name transformer layers only; pulling the
embeddings, pooler and classifier too (``reptile_map_embeddings=true``, the default, as every
earlier run of this project did) is a deviation, and ``reptile_map_embeddings=false`` follows the
paper's text. A mapped pair of different shapes is a :class:`UserError`.
Every ``meta_interval``-th step is a meta step; the others are plain KD steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainables.errors import UserError
from trainables.layer_maps import STRATEGIES, layer_map
from trainables.methods.base import Batch, MetaSteps, Pairing, distillation_space
from trainables.methods.kd import KD
from trainables.schema import hparam

if TYPE_CHECKING:  # torch loads where the method trains (see methods.base)
    import torch
    from torch import nn


def parameter_map(teacher: nn.Module, student: nn.Module, strategy: str,
                  embeddings: bool = True) -> dict[str, str]:
    """Teacher parameter name -> the student parameter name it moves toward (mapped ones only);
    ``embeddings=False`` maps the encoder layers only (no embeddings, pooler or classifier)."""
    from trainables.models import encoder_layer_prefix, num_layers

    student_params = dict(student.named_parameters())
    t_prefix, s_prefix = encoder_layer_prefix(teacher), encoder_layer_prefix(student)
    to_student = {t: s for s, ts in layer_map(strategy, num_layers(teacher), num_layers(student)).items()
                  for t in ts}
    layer_name = re.compile(rf"{re.escape(t_prefix)}\.(\d+)\.(.+)")
    out: dict[str, str] = {}
    for name, param in teacher.named_parameters():
        match = layer_name.fullmatch(name)
        if match:
            j = to_student.get(int(match.group(1)) + 1)
            if j is None:
                continue  # a teacher layer the strategy leaves alone
            target = f"{s_prefix}.{j - 1}.{match.group(2)}"
            if target not in student_params:
                raise UserError(f"reptile-distil: teacher parameter {name} maps to student parameter "
                                f"{target}, which the student does not have (different architectures)")
        elif embeddings and name in student_params:
            target = name
        else:
            continue
        if param.shape != student_params[target].shape:
            raise UserError(f"reptile-distil: teacher parameter {name} has shape {tuple(param.shape)} but "
                            f"student parameter {target} has shape {tuple(student_params[target].shape)}; "
                            "teacher and student need the same hidden sizes")
        out[name] = target
    if not out:
        raise UserError("reptile-distil: no teacher parameter maps onto the student (different architectures)")
    return out


class ReptileDistil(MetaSteps, KD):
    name = "reptile-distil"
    reads = ("inner_lr",)  # the lr of the experimental student's SGD step
    teacher_learns = True
    #: the paper's Table 1 setting (T = 5, alpha = 0.5, skip-k) as the search's first trial
    baseline = {"temperature": 5.0, "alpha": 0.5, "update_strategy": "skip"}

    @dataclass
    class Options:
        update_strategy: str = hparam("skip", "reptile-distil: which teacher layers move toward which student "
                                              "layers", choices=STRATEGIES)
        reptile_map_embeddings: bool = hparam(True, "reptile-distil: also pull embeddings, pooler and classifier")
        reptile_update: str = hparam("plain", "reptile-distil: the teacher's move, plain (theta_T -= mu (theta_T - "
                                              "theta_S')) or adam (the difference as its AdamW gradient, lr "
                                              "teacher_lr)", choices=["plain", "adam"])
        reptile_mu: float | None = hparam(None, "reptile-distil: mu of the plain update (default teacher_lr)",
                                          bounds="(0, 1]", search={"low": 1e-6, "high": 1e-4, "log": True})

    @staticmethod
    def space(s) -> None:
        distillation_space(s)
        s("update_strategy")

    @classmethod
    def unfit(cls, pairing: Pairing) -> str | None:
        """The teacher moves toward the student on mapped parameters: the same architecture, and
        teacher depths a multiple of the student's."""
        if not pairing.same_architecture:
            return "the student's architecture (model type, hidden size) differs from the teacher's"
        return pairing.layer_map_error()

    def __init__(self, cfg, task, student, teachers):
        super().__init__(cfg, task, student, teachers)
        student_params = dict(student.named_parameters())
        # (teacher parameter, student parameter) pairs, over all teachers
        self.pairs = [(dict(t.named_parameters())[tn], student_params[sn])
                      for t in teachers
                      for tn, sn in parameter_map(t, student, cfg.update_strategy, cfg.reptile_map_embeddings).items()]
        # the student parameters some teacher parameter moves toward: the only ones whose
        # experimental step the teacher update reads
        mapped = {id(s) for _, s in self.pairs}
        self.mapped_params = [p for p in student.parameters() if p.requires_grad and id(p) in mapped]

    def step(self, batch: Batch, quiz_batches=None) -> dict[str, float]:
        if not self.count_step():
            return super().step(batch)
        import torch

        from trainables.phases import phase

        with torch.no_grad():
            teacher_logits = self.mean_logits(self.teacher_outputs(batch))
        student_logits = self.student_forward(batch).logits
        inner = self.distill_loss(student_logits, teacher_logits, batch)
        with phase("student backward (inner)"):
            grads = torch.autograd.grad(inner, self.mapped_params, retain_graph=True, allow_unused=True)
        self.move_teachers({id(p): g for p, g in zip(self.mapped_params, grads)})
        with torch.no_grad():
            teacher_logits = self.mean_logits(self.teacher_outputs(batch))
        loss = self.distill_loss(student_logits, teacher_logits, batch)
        self.student_opt.update(loss)
        return {"loss": loss.detach(), "inner_loss": inner.detach()}

    def move_teachers(self, grads: dict[int, torch.Tensor | None]) -> None:
        """θ_T moves toward θ'_S = θ_S − inner_lr · g (``grads``: student parameter id -> g, or
        None where the inner loss does not reach it), without materialising θ'_S: in place,
        θ_T ← (1 − μ) θ_T + μ θ_S − μ · inner_lr · g (plain), or the difference θ_T − θ'_S as the
        teacher's AdamW gradient (adam)."""
        import torch

        from trainables.phases import phase

        lr = self.cfg.effective_inner_lr
        with torch.no_grad(), phase("teacher move"):
            if self.cfg.reptile_update == "plain":
                mu = self.cfg.teacher_lr if self.cfg.reptile_mu is None else self.cfg.reptile_mu
                teachers, students = [t for t, _ in self.pairs], [s for _, s in self.pairs]
                torch._foreach_lerp_(teachers, students, mu)  # (1 - mu) θ_T + mu θ_S, one pass
                moved = [(t, grads[id(s)]) for t, s in self.pairs if grads[id(s)] is not None]
                if moved:
                    torch._foreach_add_([t for t, _ in moved], [g for _, g in moved], alpha=-mu * lr)
            else:
                diff = {}
                for t, s in self.pairs:
                    d = t - s
                    g = grads[id(s)]
                    diff[id(t)] = d if g is None else d.add_(g, alpha=lr)
        if self.cfg.reptile_update == "adam":
            self.teacher_opt.apply([diff.get(id(p)) for p in self.teacher_opt.params])
