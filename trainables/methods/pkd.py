"""``pkd``: Patient KD (Sun et al. 2019): KD plus ``beta`` times the MSE between L2-normalised
[CLS] hidden states of mapped layers (``pkd_layer_map`` = ``skip`` or ``last``)."""

from __future__ import annotations

from dataclasses import dataclass

from trainables.layer_maps import PKD_MAPS, pkd_pairs
from trainables.methods.base import Batch, Pairing, distillation_space
from trainables.methods.kd import KD
from trainables.schema import hparam

DEFAULT_BETA = 100.0  # Sun et al. search beta in {10, 100, 500, 1000}


class PatientKD(KD):
    name = "pkd"
    reads = ("beta",)  # the weight of the patient loss

    @dataclass
    class Options:
        pkd_layer_map: str = hparam("skip", "pkd: which teacher layer each intermediate student layer matches "
                                            "(skip: every r-th, last: the last ones)", choices=PKD_MAPS)

    @staticmethod
    def space(s) -> None:
        distillation_space(s)
        s("beta", {"low": 10.0, "high": 1000.0, "log": True})  # Sun et al.'s grid {10, ..., 1000}

    @classmethod
    def unfit(cls, pairing: Pairing) -> str | None:
        """Patient KD needs an intermediate layer map: a student of 2+ layers, teacher depths a
        multiple of it, and the teachers' hidden size (the [CLS] states are compared)."""
        if pairing.student_layers is not None and pairing.student_layers < 2:
            return f"a {pairing.student_layers}-layer student has no intermediate layer to map"
        if not pairing.same_architecture:
            return "the student's architecture (model type, hidden size) differs from the teacher's"
        return pairing.layer_map_error()

    def __init__(self, cfg, task, student, teachers):
        from trainables.models import num_layers

        super().__init__(cfg, task, student, teachers)
        self.beta = DEFAULT_BETA if cfg.beta is None else cfg.beta
        depths = {num_layers(t) for t in teachers}
        if len(depths) != 1:
            raise ValueError(f"pkd needs teachers of one depth, got {sorted(depths)}")
        self.pairs = pkd_pairs(cfg.pkd_layer_map, depths.pop(), num_layers(student))

    def cached_layers(self) -> tuple[int, ...]:
        return tuple(sorted({t for _, t in self.pairs}))

    def step(self, batch: Batch, quiz_batches=None) -> dict[str, float]:
        import torch

        from trainables.losses import patient_loss

        teacher_out = self.teacher_outputs(batch, hidden=True)
        student_out = self.student_forward(batch, output_hidden_states=True)
        kd = self.distill_loss(student_out.logits, self.mean_logits(teacher_out), batch)
        patient = torch.stack([patient_loss(student_out.hidden_states, t.hidden_states, self.pairs)
                               for t in teacher_out]).mean()
        loss = kd + self.beta * patient
        self.student_opt.update(loss)
        return {"loss": loss.detach(), "kd_loss": kd.detach(), "patient_loss": patient.detach()}
