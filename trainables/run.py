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

from trainables.config import DEFAULT_TEACHER, HPARAMS, DistillConfig, field_choices
from trainables.errors import exit_on_user_error


def add_model_and_data_args(parser: argparse.ArgumentParser, *, several_tasks: bool = False) -> None:
    """Options shared by every CLI that trains (run, tuner.launch, tuner.reproduce,
    tuner.study); ``several_tasks``: ``--tasks A,B`` (comma-separated) instead of ``--task``."""
    if several_tasks:
        parser.add_argument("--tasks", default="sst2",
                            help="tasks, comma-separated: names, or folders with train/dev files (default sst2)")
    else:
        parser.add_argument("--task", default="sst2", help="task name, or a folder with train/dev files")
    parser.add_argument("--data-dir", default=None,
                        help="local data dir <dir>/<task>/{train,dev}.tsv (default: $TUNER_DATA_DIR)")
    parser.add_argument("--text-columns", default=None, help="bring-your-own task: text column(s) a[,b]")
    parser.add_argument("--label-column", default=None, help="bring-your-own task: label column")
    parser.add_argument("--task-type", default=None,
                        help=f"bring-your-own task: {' or '.join(field_choices('task_type'))} (how to read "
                             "the labels; default: inferred from them)")
    parser.add_argument("--teacher", default=DEFAULT_TEACHER, help="teacher backbone (HF name or path)")
    parser.add_argument("--teachers", default=None, help="several fine-tuned teachers, comma-separated")
    parser.add_argument("--teacher-checkpoint", default=None, help="an already fine-tuned teacher")
    parser.add_argument("--student", default=None, help="student model (default: first k teacher layers)")
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--max-eval-samples", type=int, default=None)
    parser.add_argument("--max-seq-length", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--teacher-epochs", type=int, default=None, help="epochs of teacher fine-tuning")
    parser.add_argument("--eval-steps", type=int, default=None, help="evaluate every N steps (default: per epoch)")
    parser.add_argument("--quiz-fraction", type=float, default=None,
                        help="fraction of the training file held out as the meta methods' quiz set (default 0.1)")
    parser.add_argument("--quiz-policy", default=None, choices=field_choices("quiz_policy"),
                        help="meta-only (default): methods without a quiz set train on every training row; "
                             "all-methods: every method trains on the rows left after the quiz split")
    parser.add_argument("--data-seed", type=int, default=None,
                        help="seed of the training subsample and the quiz split (default 42; --set seed "
                             "varies only initialisation, data order and dropout)")
    parser.add_argument("--select", default=None, choices=field_choices("select"),
                        help="the student saved and scored on test: best-dev (default) or final")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help=f"fix a hyperparameter; keys: {', '.join(HPARAMS)}")


#: CLI option -> config field, for options that are plain copies
_OPTION_FIELDS = ("task", "data_dir", "text_columns", "label_column", "task_type", "teacher", "teachers",
                  "teacher_checkpoint", "student", "max_train_samples", "max_eval_samples",
                  "max_seq_length", "epochs", "batch_size", "teacher_epochs", "eval_steps",
                  "method", "device", "bf16", "output_dir", "cache_dir", "eval_teacher", "quiz_fraction",
                  "quiz_policy", "data_seed", "select")


def config_from_args(args: argparse.Namespace, **extra) -> DistillConfig:
    values = {name: getattr(args, name) for name in _OPTION_FIELDS
              if getattr(args, name, None) is not None}
    values.update(extra)
    return DistillConfig.from_dict(values).with_overrides(args.assignments)


def build_parser() -> argparse.ArgumentParser:
    from trainables.methods import METHODS

    parser = argparse.ArgumentParser(prog="python -m trainables.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="kd", help=f"one of: {', '.join(METHODS)}")
    add_model_and_data_args(parser)
    parser.add_argument("--device", default=None, help=f"one of: {', '.join(field_choices('device'))}")
    parser.add_argument("--bf16", action="store_true", default=None, help="bf16 autocast")
    parser.add_argument("--eval-teacher", action="store_true", default=None,
                        help="also evaluate the teacher at each evaluation")
    parser.add_argument("--output-dir", default=None, help="save the best student (and learned teacher) here")
    parser.add_argument("--cache-dir", default=None, help="fine-tuned teacher cache")
    parser.add_argument("--output-json", default=None, help="write the final metrics here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> dict:
    from trainables.experiment import run

    args = build_parser().parse_args(argv)
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
