"""Sweep throughput at 1, 2 and 4 trials per GPU: ``python -m tuner.bench_sweep``.

    python -m tuner.bench_sweep --method kd --task sst2 --max-train-samples 2000 --trials-per-gpu 1,2,4

For each packing k it runs the same fixed configuration (the config defaults and ``--set``
values; one trial per seed) as a sweep with ``--gpus-per-trial 1/k`` and ``--max-concurrent k ×
GPUs``, ``--trials`` trials (default two waves: 2 × k × GPUs), and reports trials per hour of the
trial stage (the teacher is fine-tuned once, before the first packing, and cached), the median
trial wall time, its median ``step_ms`` and the fraction of the trials' time that trained
(see :mod:`tuner.timing`). On a machine without a GPU, ``--gpus N`` declares N logical GPUs in
the private Ray instance: the packing and the table work, the trials train on the CPU (real
numbers come from a GPU machine). ``--json PATH`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from trainables.errors import UserError, exit_on_user_error

DEFAULT_PACKINGS = (1, 2, 4)


def parse_packings(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``; anything but positive whole numbers is a UserError."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise UserError(f"--trials-per-gpu {text!r}: expected positive whole numbers separated by commas, "
                        f"e.g. 1,2,4")
    return values


def bench(base, packings: list[int], gpus: float, trials: int | None = None,
          run: Callable[..., dict] | None = None) -> list[dict[str, Any]]:
    """One sweep of ``base`` (a :class:`~tuner.spec.SweepSpec`) per packing; a row each."""
    import dataclasses

    from tuner.sweep import run_sweep

    run = run or run_sweep
    rows = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in packings:
        at_once = max(1, int(k * gpus))
        n = trials or 2 * at_once
        seed = int(base.config.get("seed", 42))
        spec = dataclasses.replace(base, name=f"{base.name or 'bench-sweep'}-{stamp}-{k}-per-gpu",
                                   grid={"seed": [seed + i for i in range(1, n + 1)]}, num_samples=1,
                                   scheduler="fifo", gpus_per_trial=1.0 / k, max_concurrent=at_once, seeds=0)
        summary = run(spec)
        t = summary["time"]
        done = [tr for tr in summary["trials"] if tr["status"] == "TERMINATED"]
        walls = [tr["metrics"]["train_seconds"] for tr in done if "train_seconds" in tr["metrics"]]
        steps = [tr["metrics"]["step_ms"] for tr in done if "step_ms" in tr["metrics"]]
        rows.append({"trials_per_gpu": k, "gpus_per_trial": 1.0 / k, "trials_at_once": at_once,
                     "trials": len(done), "trial_stage_seconds": t["trials_seconds"],
                     "trials_per_hour": 3600 * len(done) / t["trials_seconds"] if t["trials_seconds"] else None,
                     "median_train_seconds": statistics.median(walls) if walls else None,
                     "median_step_ms": statistics.median(steps) if steps else None,
                     "training_fraction": t["training_fraction"], "sweep": spec.name})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    def f(v, spec=".1f"):
        return "n/a" if v is None else format(v, spec)

    lines = ["| trials/GPU | at once | trials | trial stage s | trials/hour | × 1/GPU | median train s | "
             "median ms/step | training |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ref = rows[0]["trials_per_hour"] if rows else None
    for r in rows:
        ratio = r["trials_per_hour"] / ref if ref and r["trials_per_hour"] else None
        frac = None if r["training_fraction"] is None else 100 * r["training_fraction"]
        lines.append(f"| {r['trials_per_gpu']} | {r['trials_at_once']} | {r['trials']} | "
                     f"{f(r['trial_stage_seconds'])} | {f(r['trials_per_hour'])} | {f(ratio, '.2f')} | "
                     f"{f(r['median_train_seconds'])} | {f(r['median_step_ms'])} | {f(frac, '.0f')}% |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from trainables.options import add_config_options
    from trainables.run import add_model_and_data_args

    p = argparse.ArgumentParser(prog="python -m tuner.bench_sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="kd", help="the method whose trials are timed (default kd)")
    add_model_and_data_args(p)
    add_config_options(p, fields=("student_layers", "cache_dir"))
    p.add_argument("--trials-per-gpu", default=",".join(map(str, DEFAULT_PACKINGS)), metavar="K1,K2,...",
                   help="packings to compare (default 1,2,4)")
    p.add_argument("--trials", type=int, default=None, help="trials per packing (default 2 × trials at once)")
    p.add_argument("--gpus", type=int, default=None,
                   help="GPUs of the private local Ray instance (default the machine's; on a CPU machine "
                        "this many logical GPUs)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default 1)")
    p.add_argument("--address", default=None, help="an existing Ray cluster instead of a private local one")
    p.add_argument("--storage-path", default=None, help="where the sweeps go (default ./ray_results)")
    p.add_argument("--mlflow-uri", default=None, help="tracking URI (default sqlite:///<cwd>/mlflow.db)")
    p.add_argument("--experiment", default="distill-tune-bench", help="MLflow experiment (default distill-tune-bench)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    return p


@exit_on_user_error
def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from trainables.methods import get_method
    from trainables.run import config_from_args

    from tuner import cluster
    from tuner.spec import SweepSpec

    args = build_parser().parse_args(argv)
    packings = parse_packings(args.trials_per_gpu)
    if args.trials is not None and args.trials < 1:
        raise UserError(f"--trials must be >= 1, got {args.trials}")
    if args.gpus is not None and (args.gpus < 1 or args.address):
        raise UserError(f"--gpus {args.gpus}: a whole number >= 1, for a private local instance only "
                        "(without --address)")
    get_method(args.method)
    fixed = {"student_layers": args.student_layers} if args.student_layers is not None else {}
    cfg = config_from_args(args, method=args.method)
    config = {k: v for k, v in cfg.to_dict().items() if k not in ("method", *fixed)}
    base = SweepSpec(method=args.method, config=config, fixed=fixed, cpus_per_trial=args.cpus_per_trial,
                     storage_path=args.storage_path, mlflow_uri=args.mlflow_uri, experiment=args.experiment,
                     address=args.address, name=f"bench-{args.method}", verbose=0)
    with cluster.connect(args.address, num_gpus=args.gpus):
        gpus = cluster.check_trial_resources(args.cpus_per_trial, 0.0)["GPU"]
        if gpus < 1:
            raise UserError("the Ray instance has no GPU; on a machine without one, declare logical GPUs "
                            "with --gpus N")
        rows = bench(base, packings, gpus, args.trials)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
