"""The embedded search spaces: one define-by-run function per method, and their default ranges.

Defaults follow the papers' grids: student learning rate lambda in [1e-5, 1e-4] (log), teacher
learning rate mu in [1e-6, 1e-4] (log), alpha in [0, 1], temperature T in [1, 10], batch size in
{8, 16, 32, 64} (MetaDistil's {32, 64} plus two sizes for small tasks), ReptileDistil's
update strategy in {first, last, skip, both}; PKD's beta in [10, 1000] (log; Sun et al. search
{10, 100, 500, 1000}); Meta-Adaptive-KD's beta (a task-loss weight) in [0, 1].

Conditional by construction: ``teacher_lr`` is searched only where the method's teacher learns
(``Method.teacher_learns``), ``update_strategy`` only for reptile-distil, ``beta`` for pkd and
meta-adaptive-kd, ``pilot_update``/``meta_interval`` for metadistil.

A method registered in :data:`trainables.methods.METHODS` without an entry in :data:`SPACES` gets
:func:`base_space`: ``student_lr``; plus ``alpha`` and ``temperature`` when it uses a teacher;
plus ``teacher_lr`` when its teacher learns.
"""

from __future__ import annotations

from search_spaces.space import Choice, Distribution, Float, Int, SpaceFn, Suggest

#: default range of every hyperparameter a space (or a ``--space`` key without a range) may search
DEFAULT_RANGES: dict[str, Distribution] = {
    "student_lr": Float(1e-5, 1e-4, log=True),
    "teacher_lr": Float(1e-6, 1e-4, log=True),
    "inner_lr": Float(1e-5, 1e-4, log=True),
    "adaptive_lr": Float(1.0, 1000.0, log=True),
    "alpha": Float(0.0, 1.0),
    "beta": Float(0.0, 1.0),
    "temperature": Float(1.0, 10.0),
    "update_strategy": Choice("first", "last", "skip", "both"),
    "reptile_update": Choice("plain", "adam"),
    "pkd_layer_map": Choice("skip", "last"),
    "kd_loss": Choice("kl", "mse", "mse_prob"),
    "inner_update": Choice("sgd", "adam"),
    "noise_token": Choice("mask", "unk", "random"),
    "pilot_update": Choice(True, False),
    "meta_interval": Int(1, 4),
    "num_quiz_batches": Int(1, 4),
    "num_inner_batches": Int(1, 4),
    "noise_prob": Float(0.0, 0.3),
    "warmup_epochs": Int(0, 2),
    "batch_size": Choice(8, 16, 32, 64),
    "weight_decay": Float(0.0, 0.1),
    "lr_warmup_ratio": Float(0.0, 0.2),
}

PKD_BETA = Float(10.0, 1000.0, log=True)


def _distillation(s: Suggest) -> None:
    """What every distillation space searches: lambda, (mu,) alpha, T and the batch size (MetaDistil
    searched it for its method and every baseline alike)."""
    s("student_lr")
    if s.method.teacher_learns:
        s("teacher_lr")
    s("alpha")
    s("temperature")
    s("batch_size")


def base_space(s: Suggest) -> None:
    """Fallback for a method without its own space (see the module doc)."""
    s("student_lr")
    if s.method.uses_teacher:
        s("alpha")
        s("temperature")
    if s.method.teacher_learns:
        s("teacher_lr")


def finetune(s: Suggest) -> None:
    s("student_lr")


def kd(s: Suggest) -> None:
    _distillation(s)


def pkd(s: Suggest) -> None:
    _distillation(s)
    s("beta", PKD_BETA)


def metadistil(s: Suggest) -> None:
    _distillation(s)
    s("pilot_update")
    s("meta_interval")
    s("inner_update")


def meta_adaptive_kd(s: Suggest) -> None:
    _distillation(s)
    s("beta")
    s("adaptive_lr")


def reptile_distil(s: Suggest) -> None:
    _distillation(s)
    s("update_strategy")


#: the first (baseline) trial of a method's search, where it differs from the config defaults:
#: ReptileDistil's Table 1 setting (T = 5, alpha = 0.5, skip-k)
BASELINES: dict[str, dict] = {
    "reptile-distil": {"temperature": 5.0, "alpha": 0.5, "update_strategy": "skip"},
}

#: method name -> its define-by-run space (methods not listed use :func:`base_space`)
SPACES: dict[str, SpaceFn] = {
    "finetune": finetune,
    "kd": kd,
    "pkd": pkd,
    "metadistil": metadistil,
    "meta-adaptive-kd": meta_adaptive_kd,
    "reptile-distil": reptile_distil,
}
