"""Run one configuration without Ray (debugging, scripting, GPU machines without Ray).

    python -m trainables.run --method kd --task sst2 --set alpha=0.7 --set temperature=4 \
        --max-train-samples 2000 --epochs 1 --output-json out.json

Prints metrics at each evaluation under a progress bar and writes the final metrics (with
``eval_score``, the task's primary metric) to ``--output-json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from trainables.config import DistillConfig
from trainables.errors import exit_on_user_error
from trainables.options import add_config_options, config_values, listing


def add_model_and_data_args(parser: argparse.ArgumentParser, *, several_tasks: bool = False) -> None:
    """The config options shared by every CLI that trains (run, tuner.launch, tuner.reproduce,
    tuner.study, tuner.bench_sweep): data, models, the training budget and ``--set``, generated
    from the schema (``--student-layers``, ``--method`` and the resource and tracking options are
    added by the callers that have them); ``several_tasks``: ``--tasks A,B`` instead of ``--task``."""
    add_config_options(parser, groups=("data", "models", "training", "method"),
                       exclude=("method", "student_layers", "cache_dir"), several_tasks=several_tasks)


def config_from_args(args: argparse.Namespace, **extra) -> DistillConfig:
    """The config of the options given on the command line (the others: the config's defaults),
    ``extra`` values, then the ``--set`` ones."""
    values = config_values(args)
    values.update(extra)
    return DistillConfig.from_dict(values).with_overrides(args.assignments)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainables.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print the methods and their own options")
    add_config_options(parser)  # every config option, by group, and --set
    parser.add_argument("--output-json", default=None, help="write the final metrics here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)  # --help and --list load no torch
    if args.list:
        print(listing())
        return {}
    from trainables.experiment import run

    cfg = config_from_args(args)
    summary = run(cfg, progress=not args.quiet)
    shown = {k: v for k, v in summary.items() if k != "history"}
    print(json.dumps(shown, indent=2, default=str))
    if args.output_json:
        os.makedirs(os.path.dirname(os.path.abspath(args.output_json)), exist_ok=True)
        with open(args.output_json, "w") as fh:
            json.dump(summary, fh, indent=2, default=str)
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
