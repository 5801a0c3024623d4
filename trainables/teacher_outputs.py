"""Cached outputs of frozen teachers.

For a method whose teachers do not learn (kd, pkd, multi-teacher kd), run with the teachers in eval
mode (``teacher_dropout=false``) and without noise injection, a teacher's output on a training row
is the same at every step, in every epoch and in every trial of a sweep on the same rows. It is
computed once — by the first run that needs it, under a file lock, so concurrent trials wait
for one computation — saved under the teacher cache (``<cache>/outputs/<key>.pt``; in a sweep the
cache is under the storage path), and read by every run on those rows instead of running the
teacher: a KD step then costs the student's forward and backward only.

What is kept: each teacher's logits, and for PKD the [CLS] vectors of the teacher layers it maps.
Training batches carry ``row`` (the row's position in the training split) to look them up. The
key covers the teachers (paths and weight files), the rows (task, data options and a digest of
their ids), the sequence length, the precision and the kept layers. ``teacher_output_cache=false``
turns the cache off (the bench's uncached KD reference).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
from torch import nn

from trainables.schema import Config

ROW = "row"  # batch key: the row's position in the training split


@dataclass
class TeacherOutputs:
    """Per-row outputs of every teacher: ``logits`` [teachers, rows, labels] and ``cls``
    {hidden-state index: [teachers, rows, hidden]}."""

    logits: torch.Tensor
    cls: dict[int, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device) -> "TeacherOutputs":
        return TeacherOutputs(self.logits.to(device), {k: v.to(device) for k, v in self.cls.items()})

    def outputs(self, rows: torch.Tensor) -> list[SimpleNamespace]:
        """What each teacher's forward would return for these rows: ``logits`` and, for the kept
        layers, ``hidden_states[k]`` as [batch, 1, hidden] (the [CLS] position only)."""
        rows = rows.to(self.logits.device)
        return [SimpleNamespace(logits=self.logits[i, rows],
                                hidden_states={k: v[i, rows].unsqueeze(1) for k, v in self.cls.items()})
                for i in range(self.logits.shape[0])]


def usable(method_cls, cfg: Config) -> bool:
    """Whether the method's teacher outputs are fixed per row, so the cache applies."""
    return (cfg.teacher_output_cache and method_cls.uses_teacher and not method_cls.teacher_learns
            and cfg.noise_prob == 0 and not cfg.teacher_dropout)


@torch.no_grad()
def compute(teachers: Sequence[nn.Module], loader, device: torch.device, *, layers: Sequence[int] = (),
            bf16: bool = False, num_rows: int | None = None) -> TeacherOutputs:
    """Run every teacher (eval mode) once over ``loader``'s batches (which carry ``row``;
    ``num_rows`` rows, default ``len(loader.dataset)``)."""
    from trainables.models import forward_inputs

    n = len(loader.dataset) if num_rows is None else num_rows
    logits, cls = None, {k: None for k in layers}
    for i, teacher in enumerate(teachers):
        was = teacher.training
        teacher.eval()
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = teacher(**forward_inputs(teacher, batch), output_hidden_states=bool(layers))
            rows = batch[ROW]
            if logits is None:
                logits = torch.zeros(len(teachers), n, out.logits.shape[-1], device=device)
            logits[i, rows] = out.logits.float()
            for k in layers:
                if cls[k] is None:
                    cls[k] = torch.zeros(len(teachers), n, out.hidden_states[k].shape[-1], device=device)
                cls[k][i, rows] = out.hidden_states[k][:, 0].float()
        teacher.train(was)
    return TeacherOutputs(logits, cls)


def _weights_stamp(path: str) -> list:
    """Names, sizes and modification times of a checkpoint's weight files (or just the name)."""
    if not os.path.isdir(path):
        return [path]
    return sorted((name, os.path.getsize(os.path.join(path, name)), os.path.getmtime(os.path.join(path, name)))
                  for name in os.listdir(path) if name.endswith((".safetensors", ".bin")))


def cache_key(cfg: Config, teacher_paths: Sequence[str], row_ids: Sequence[int],
              layers: Sequence[int]) -> str:
    settings = {
        "teachers": [[os.path.abspath(p) if os.path.exists(p) else p, _weights_stamp(p)] for p in teacher_paths],
        "task": cfg.task, "data_dir": cfg.data_dir, "text_columns": cfg.text_columns,
        "label_column": cfg.label_column, "max_seq_length": cfg.max_seq_length, "bf16": cfg.bf16,
        "layers": list(layers), "rows": hashlib.sha256(json.dumps(list(map(int, row_ids))).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:20]


def load_or_compute(cfg: Config, teacher_paths: Sequence[str], teachers: Sequence[nn.Module], loader,
                    row_ids: Sequence[int], device: torch.device, layers: Sequence[int] = ()) -> TeacherOutputs:
    """The cached outputs for these teachers and rows, computed (once, under a lock) if missing."""
    from filelock import FileLock

    from trainables.teacher_cache import cache_root

    folder = os.path.join(os.path.dirname(cache_root(cfg)), "outputs")
    path = os.path.join(folder, cache_key(cfg, teacher_paths, row_ids, layers) + ".pt")
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        with FileLock(path + ".lock"):
            if not os.path.isfile(path):
                outputs = compute(teachers, loader, device, layers=layers, bf16=cfg.bf16)
                tmp = path + f".{os.getpid()}.tmp"
                torch.save({"logits": outputs.logits.cpu(), "cls": {k: v.cpu() for k, v in outputs.cls.items()}}, tmp)
                os.replace(tmp, path)  # readers never see a half-written file
    state = torch.load(path, map_location="cpu", weights_only=True)
    return TeacherOutputs(state["logits"], state["cls"]).to(device)
