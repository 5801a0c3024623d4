"""Loss functions shared by the methods (pure functions of tensors, so they are testable by hand).

Conventions: ``student_logits``/``teacher_logits`` are ``[batch, num_labels]`` (``[batch, 1]`` for
regression); ``labels`` are class ids (long) or float targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads where a loss is computed (the option declarations stay light)
    import torch

#: the soft (distillation) losses :func:`soft_loss` knows, the choices of ``kd_loss``
SOFT_LOSSES = ("kl", "mse", "mse_prob")


def task_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    """Cross-entropy for classification, MSE for regression."""
    import torch.nn.functional as F

    if regression:
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
    return F.cross_entropy(logits, labels)


def soft_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
              kind: str = "kl", regression: bool = False) -> torch.Tensor:
    """The distillation term.

    * ``kl``: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch (Hinton et al.);
    * ``mse``: mean squared error between the raw logits (no temperature);
    * ``mse_prob``: ``T^2 *`` the mean squared error between the temperature-softened
      probabilities ``softmax(s/T)`` and ``softmax(t/T)`` (mean over rows and classes), the soft
      loss of the official MetaDistil code;
    * regression tasks: MSE between the student's and the teacher's outputs (``kind`` ignored).
    """
    import torch.nn.functional as F

    if regression or kind == "mse":
        return F.mse_loss(student_logits, teacher_logits)
    if kind == "mse_prob":
        p_s = F.softmax(student_logits / temperature, dim=-1)
        p_t = F.softmax(teacher_logits / temperature, dim=-1)
        return F.mse_loss(p_s, p_t) * temperature**2
    if kind != "kl":
        raise ValueError(f"unknown kd_loss {kind!r}; valid: {', '.join(SOFT_LOSSES)}")
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * temperature**2


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
            alpha: float | torch.Tensor, temperature: float, kind: str = "kl",
            regression: bool = False, beta: float | torch.Tensor | None = None) -> torch.Tensor:
    """``alpha * soft + beta * task``; ``beta`` defaults to ``1 - alpha`` (Hinton's convex mix)."""
    soft = soft_loss(student_logits, teacher_logits, temperature, kind, regression)
    hard = task_loss(student_logits, labels, regression)
    weight = (1 - alpha) if beta is None else beta
    return alpha * soft + weight * hard


def patient_loss(student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor],
                 pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Patient-KD term (Sun et al. 2019): for each (student layer, teacher layer) pair, the MSE
    between the L2-normalised [CLS] (position 0) vectors; summed over the pairs.

    ``*_hidden`` are Hugging Face ``hidden_states`` tuples (index 0 = embeddings, i = layer i).
    """
    import torch.nn.functional as F

    total = student_hidden[0].new_zeros(())
    for s_idx, t_idx in pairs:
        s_cls = F.normalize(student_hidden[s_idx][:, 0], dim=-1)
        t_cls = F.normalize(teacher_hidden[t_idx][:, 0], dim=-1)
        total = total + F.mse_loss(s_cls, t_cls)
    return total
