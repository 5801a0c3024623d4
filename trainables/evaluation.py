"""Scoring a model on a loader: the task metrics of its predictions (the engine's dev evaluations,
the selected student's test split, the teacher's scores)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from trainables.methods.base import Batch, model_inputs
from trainables.metrics import compute_metrics
from trainables.tasks import TaskSpec


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, task: TaskSpec, device: torch.device,
             bf16: bool = False, prefix: str = "eval_") -> dict[str, float]:
    """Task metrics of ``model`` on ``loader``; keys ``<prefix><metric>`` and ``<prefix>score``."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in loader:
        batch = to_device(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(**model_inputs(batch, model)).logits
        logits.append(out.float().cpu())
        labels.append(batch["labels"].cpu())
    model.train(was_training)
    values = compute_metrics(task, torch.cat(logits).numpy(), torch.cat(labels).numpy())
    return {f"{prefix}{k}": float(v) for k, v in values.items()}
