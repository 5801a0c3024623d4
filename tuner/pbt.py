"""Population-based training (``--scheduler pbt``): Ray Tune's ``PopulationBasedTraining`` over a
method's λ (``student_lr``), μ (``teacher_lr``, ``reptile_mu``), α (``alpha``) and T
(``temperature``), its initial population, and each trial's hyperparameter schedule.

* **What is perturbed** (:func:`mutated`): those of :data:`PBT_HPARAMS` that the sweep's space
  searches (not fixed with ``--set``) and the method reads (``Method.hyperparameters``), less the
  ones the method learns from a first value (``Method.learned``: meta-adaptive-kd's α). Their
  ranges are the space's (``--space`` included); a perturbed value (×0.8 or ×1.2, or a resample
  with ``resample_probability``) is clipped into its range (:class:`ClipToRanges`). The other
  searched hyperparameters are drawn once and copied with the cloned trial's state.
* **The initial population** (:func:`initial_configs`): ``num_samples`` configs of the method's
  define-by-run space drawn by Optuna's ``RandomSampler`` (seeded by ``search_seed``), the first
  one the config defaults (the same baseline as a search); Ray's PBT takes no searcher, so they
  go to Ray's ``BasicVariantGenerator`` as points to evaluate.
* **Lockstep**: PBT runs synchronously (every trial pauses at each perturbation point), and the
  hyperparameters that set a trial's number of steps (:data:`STEP_HPARAMS`: the batch size,
  epochs) are pinned to the sweep's values, so every trial reaches the same perturbation points:
  an exploit clones a checkpoint of the same evaluation (a trial's evaluation count and step go on
  without a gap or a repeat), the checkpoint is still kept (:func:`checkpoints_to_keep`), and no
  trial ends between two perturbation points while others wait for it. A trial is never
  exploited at its last evaluation, nor paused there (:class:`DistillPBT`).
* **The schedule**: each evaluation reports the searched hyperparameters' current values as
  ``hp/<name>`` (MLflow step metrics: what the trial itself trained with), and the first report
  after an exploit ``pbt_exploit = 1`` and ``pbt_exploited_from`` (the cloned trial's id). The
  trial state in each checkpoint keeps the schedule of the weights it holds (inherited from the
  cloned trial on an exploit); :func:`attach_schedules` reads it from each trial's last
  checkpoint into the summary (:func:`schedule_of`: segments of constant values), and the number
  of exploits from Ray's ``pbt_global.txt``.

The time unit is the evaluation (``evaluation`` in the reports); ``perturbation_interval`` must be
a multiple of ``checkpoint_every`` (an exploit needs a checkpoint at the perturbation point).
"""

from __future__ import annotations

import json
import os
from typing import Any

from trainables.errors import UserError
from trainables.trainable import EVALUATION

#: the hyperparameters PBT may perturb during training (λ, μ, α, T), where the method reads them
PBT_HPARAMS = ("student_lr", "teacher_lr", "reptile_mu", "alpha", "temperature")
#: the sweep settings of PBT, with their defaults (fields of :class:`tuner.spec.SweepSpec`)
DEFAULTS = {"perturbation_interval": 2, "quantile_fraction": 0.25, "resample_probability": 0.25}


def add_args(group) -> None:
    """``--perturbation-interval``, ``--quantile-fraction``, ``--resample-probability``."""
    d = DEFAULTS
    group.add_argument("--perturbation-interval", type=int, default=d["perturbation_interval"], metavar="N",
                       help="PBT: evaluations between perturbations (a multiple of --checkpoint-every; "
                            f"default {d['perturbation_interval']})")
    group.add_argument("--quantile-fraction", type=float, default=d["quantile_fraction"],
                       help="PBT: the bottom fraction of trials that clone the top fraction at each "
                            f"perturbation, in (0, 0.5] (default {d['quantile_fraction']:g})")
    group.add_argument("--resample-probability", type=float, default=d["resample_probability"],
                       help="PBT: chance that a cloned hyperparameter is drawn anew from its range instead of "
                            f"scaled by 0.8 or 1.2 (default {d['resample_probability']:g})")


def spec_fields(args) -> dict[str, Any]:
    """The PBT fields of a SweepSpec from parsed ``add_args`` options."""
    return {k: getattr(args, k, v) for k, v in DEFAULTS.items()}


def check_settings(spec) -> None:
    """The PBT settings of a spec (before Ray starts; the space is checked by :func:`mutated`)."""
    if spec.grid:
        raise UserError("--scheduler pbt evolves a population of searched configs; a --grid sweep has fixed "
                        "ones (valid schedulers with --grid: asha, fifo)")
    if spec.methods:
        raise UserError("--scheduler pbt clones one trial's weights into another, which needs one method "
                        f"(got --methods {','.join(spec.methods)}); valid schedulers with --methods: asha, fifo")
    if spec.study_storage:
        raise UserError("--scheduler pbt draws its population without TPE, so there is no Optuna study to keep "
                        "(--study-storage)")
    if spec.num_samples < 2:
        raise UserError(f"--scheduler pbt needs a population of at least 2 trials (--num-samples), got "
                        f"{spec.num_samples}")
    if spec.perturbation_interval < 1:
        raise UserError(f"--perturbation-interval must be >= 1 (evaluations), got {spec.perturbation_interval}")
    if spec.perturbation_interval % spec.checkpoint_every:
        raise UserError(f"--perturbation-interval {spec.perturbation_interval} must be a multiple of "
                        f"--checkpoint-every {spec.checkpoint_every}: an exploit clones the checkpoint taken at "
                        f"the perturbation point")
    if not 0 < spec.quantile_fraction <= 0.5:
        raise UserError(f"--quantile-fraction must be in (0, 0.5], got {spec.quantile_fraction}")
    if not 0 <= spec.resample_probability <= 1:
        raise UserError(f"--resample-probability must be in [0, 1], got {spec.resample_probability}")


#: hyperparameters that set a trial's number of steps and evaluations: PBT fixes them at the sweep's
#: values (every trial must reach the same perturbation points: the population trains in lockstep)
STEP_HPARAMS = ("batch_size", "epochs", "warmup_epochs")


def pinned(cfg) -> dict[str, Any]:
    """The sweep's values of :data:`STEP_HPARAMS` (fixed in a PBT sweep's space)."""
    return {k: getattr(cfg, k) for k in STEP_HPARAMS}


def mutated(method: str, space) -> dict[str, Any]:
    """``{name: distribution}`` of the hyperparameters PBT perturbs (see the module doc); a
    UserError when there is none."""
    from trainables.methods import get_method

    cls = get_method(method)
    searched = space.searched()
    names = [n for n in PBT_HPARAMS if n in searched and n in cls.hyperparameters() and n not in cls.learned]
    if not names:
        candidates = [n for n in PBT_HPARAMS if n in cls.hyperparameters() and n not in cls.learned]
        raise UserError(f"--scheduler pbt perturbs {', '.join(candidates)} for {method}, but the sweep's space "
                        f"searches none of them (fixed with --set or --space?)")
    return {n: searched[n] for n in names}


class ClipToRanges:
    """PBT's ``custom_explore_fn``: a value scaled by a perturbation factor out of its range is
    clipped to the range (a config the trial's checks would reject otherwise). Picklable (Ray
    saves the scheduler with the experiment)."""

    def __init__(self, ranges: dict[str, tuple[float, float]]):
        self.ranges = dict(ranges)

    def __call__(self, config: dict) -> dict:
        for name, (low, high) in self.ranges.items():
            if name in config and isinstance(config[name], (int, float)) and not isinstance(config[name], bool):
                config[name] = type(config[name])(min(max(config[name], low), high))
        return config


def checkpoints_to_keep(spec) -> int:
    """Checkpoints kept per trial: a trial cloned at a perturbation point may take
    ``perturbation_interval / checkpoint_every`` more (and a final one) before the cloning trial
    has read its checkpoint; synchronous PBT bounds it by that (Ray deletes older ones)."""
    return max(3, spec.perturbation_interval // spec.checkpoint_every + 2)


def initial_configs(space, num_samples: int, seed: int, first: dict[str, Any] | None = None) -> list[dict]:
    """``num_samples`` configs of the define-by-run ``space`` drawn by Optuna's seeded
    ``RandomSampler`` (``first``, e.g. the config defaults, fixes the first one's values where
    given); each with the space's fixed values."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    if first:
        study.enqueue_trial(first)
    configs = []
    for _ in range(num_samples):
        trial = study.ask()
        fixed = space(trial)
        configs.append({**trial.params, **fixed})
    return configs


def param_space(configs: list[dict]) -> dict[str, Any]:
    """The Tuner's ``param_space`` for the population ``configs`` (given to Ray's
    ``BasicVariantGenerator`` as points to evaluate, which must name keys of the space): each key
    a choice of its values."""
    from ray import tune

    keys = list(dict.fromkeys(k for c in configs for k in c))
    return {k: tune.choice(list(dict.fromkeys(c[k] for c in configs if k in c))) for k in keys}


# ---- schedules ----------------------------------------------------------------------------------

def schedule_of(entries: list[dict]) -> list[dict[str, Any]]:
    """A trial's schedule (its trial state's entries, one per evaluation, inherited from the cloned
    trial on each exploit) as segments of constant hyperparameters trained by one trial:
    ``{"evaluations": [first, last], "steps": [first, last], "trial": id, "hparams": {...}}``."""
    segments: list[dict[str, Any]] = []
    for entry in entries or []:
        values = {k: v for k, v in entry.items() if k not in (EVALUATION, "step", "trial")}
        last = segments[-1] if segments else None
        if last is not None and last["trial"] == entry.get("trial") and last["hparams"] == values:
            last["evaluations"][1], last["steps"][1] = entry[EVALUATION], entry["step"]
            continue
        segments.append({"evaluations": [entry[EVALUATION], entry[EVALUATION]], "steps": [entry["step"], entry["step"]],
                         "trial": entry.get("trial"), "hparams": values})
    return segments


def _trial_schedule(checkpoint) -> list[dict]:
    from trainables.trainable import STATE_FILE

    if checkpoint is None:
        return []
    try:
        with checkpoint.as_directory() as directory:
            with open(os.path.join(directory, STATE_FILE)) as fh:
                return json.load(fh).get("schedule") or []
    except (OSError, ValueError):
        return []


def exploits(experiment_dir: str) -> list[list]:
    """Ray's record of the sweep's exploits (``pbt_global.txt``: target trial tag, cloned trial tag,
    their iterations, the cloned config, the new config)."""
    path = os.path.join(experiment_dir, "pbt_global.txt")
    if not os.path.isfile(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def attach_schedules(trials: list[dict[str, Any]], experiment_dir: str) -> int:
    """Add each trial's ``schedule`` (:func:`schedule_of` of the trial state in its last
    checkpoint) to the summary's trial entries; returns the number of exploits Ray recorded."""
    for trial in trials:
        trial["schedule"] = schedule_of(_trial_schedule(trial.get("_checkpoint")))
    return len(exploits(experiment_dir))


def summary_section(spec, mutations: dict[str, Any], exploits: int) -> dict[str, Any]:
    from search_spaces.space import describe_distribution

    return {"perturbation_interval": spec.perturbation_interval, "quantile_fraction": spec.quantile_fraction,
            "resample_probability": spec.resample_probability, "synchronous": True,
            "mutated": {n: describe_distribution(d) for n, d in mutations.items()},
            "initial_configs": "optuna RandomSampler", "exploits": exploits}


_SYMBOL = {"student_lr": "λ", "teacher_lr": "μ", "reptile_mu": "μ_reptile", "alpha": "α", "temperature": "T"}


def format_schedules(summary: dict[str, Any]) -> list[str]:
    """The console lines of each surviving (finished) trial's schedule: the segments its final
    weights went through, those trained in another trial (before an exploit cloned it) marked
    with that trial's id."""
    from tuner.tracking import STATUS_TERMINATED

    pbt = summary.get("pbt") or {}
    lines = [f"PBT: {pbt.get('exploits', 0)} exploit(s), perturbing {', '.join(pbt.get('mutated', {}))} every "
             f"{pbt.get('perturbation_interval')} evaluation(s); each surviving trial's schedule:"]
    for t in summary.get("trials", []):
        if t["status"] != STATUS_TERMINATED or not t.get("schedule"):
            continue
        parts = []
        for seg in t["schedule"]:
            first, last = seg["evaluations"]
            span = f"eval {first}" if first == last else f"eval {first}-{last}"
            if seg["trial"] != t["trial_id"]:
                span += f" (in {seg['trial']})"
            values = " ".join(f"{_SYMBOL.get(k, k)}={v:.3g}" if isinstance(v, float) else f"{_SYMBOL.get(k, k)}={v}"
                              for k, v in seg["hparams"].items() if k in pbt.get("mutated", seg["hparams"]))
            parts.append(f"{span}: {values}")
        lines.append(f"  {t['trial_id']} ({t['metrics'].get('best_eval_score', float('nan')):.4g}): "
                     + " | ".join(parts))
    return lines
