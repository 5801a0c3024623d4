"""The option schema and what is generated from it: every CLI's config options (names and defaults
kept), ``--set``, the README's option table, choices and ranges read from one place."""

from __future__ import annotations

import argparse

import pytest

from conftest import REPO_ROOT
from trainables import config, options
from trainables.config import DistillConfig
from trainables.errors import UserError

#: the option strings each entry point had before its config options were generated (kept, so no
#: command line breaks)
BEFORE = {
    "trainables.run": "--batch-size --bf16 --cache-dir --data-dir --data-seed --device --epochs --eval-steps "
                      "--eval-teacher --label-column --max-eval-samples --max-seq-length --max-train-samples "
                      "--method --output-dir --output-json --quiet --quiz-fraction --quiz-policy --select --set "
                      "--student --task --task-type --teacher --teacher-checkpoint --teacher-epochs --teachers "
                      "--text-columns",
    "tuner.launch": "--address --batch-size --bf16 --cache-dir --checkpoint-every --cpus-per-trial --data-dir "
                    "--data-seed --device --epochs --eval-steps --eval-teacher --evals-per-epoch --experiment "
                    "--gpus-per-trial --grace-period --grid --label-column --list --max-concurrent "
                    "--max-eval-samples --max-failures --max-seq-length --max-train-samples --method --mlflow-uri "
                    "--name --no-defaults-first --num-samples --output-json --quiet --quiz-fraction --quiz-policy "
                    "--reduction-factor --resume --scheduler --search-seed --seeds --select --set --space "
                    "--storage-path --student --student-layers --study-name --study-storage --tag --task "
                    "--task-type --teacher --teacher-checkpoint --teacher-epochs --teachers --text-columns",
    "tuner.reproduce": "--address --batch-size --bf16 --cache-dir --checkpoint-every --cpus-per-trial --data-dir "
                       "--data-seed --device --epochs --eval-steps --eval-teacher --evals-per-epoch --experiment "
                       "--gpus-per-trial --grace-period --label-column --max-concurrent --max-eval-samples "
                       "--max-failures --max-seq-length --max-train-samples --methods --mlflow-uri --name "
                       "--no-defaults-first --num-samples --out --quiet --quiz-fraction --quiz-policy "
                       "--reduction-factor --scheduler --search-seed --seeds --select --set --storage-path "
                       "--student --student-layers --study-name --study-storage --tag --task-type --tasks "
                       "--teacher --teacher-checkpoint --teacher-epochs --teachers --text-columns",
    "tuner.study": "--address --batch-size --cache-dir --cpus-per-trial --data-dir --data-seed --device --epochs "
                   "--eval-steps --eval-teacher --experiment --from-mlflow --gpus-per-trial --label-column "
                   "--max-concurrent --max-eval-samples --max-seq-length --max-train-samples --methods --mlflow-uri "
                   "--out --quiz-fraction --quiz-policy --seeds --select --set --storage-path --student --study "
                   "--task --task-type --teacher --teacher-checkpoint --teacher-epochs --teacher-score --teachers "
                   "--text-columns --values --verbose",
    "tuner.bench_sweep": "--address --batch-size --cache-dir --cpus-per-trial --data-dir --data-seed --epochs "
                         "--eval-steps --experiment --gpus --json --label-column --max-eval-samples --max-seq-length "
                         "--max-train-samples --method --mlflow-uri --quiz-fraction --quiz-policy --select --set "
                         "--storage-path --student --student-layers --task --task-type --teacher "
                         "--teacher-checkpoint --teacher-epochs --teachers --text-columns --trials --trials-per-gpu",
}

#: parser defaults other than None (unset: the config's, or the sweep's, default applies)
DEFAULTS = {
    "trainables.run": {"method": "kd", "task": "sst2", "teacher": config.DEFAULT_TEACHER},
    "tuner.launch": {"method": None, "task": "sst2", "teacher": config.DEFAULT_TEACHER, "epochs": 2, "batch_size": 16},
    "tuner.reproduce": {"tasks": "sst2", "teacher": config.DEFAULT_TEACHER, "epochs": 2, "batch_size": 16},
    "tuner.study": {"task": "sst2", "teacher": config.DEFAULT_TEACHER, "epochs": None, "batch_size": None},
}


def parser_of(module: str) -> argparse.ArgumentParser:
    import importlib

    return importlib.import_module(module).build_parser()


@pytest.mark.parametrize("module", list(BEFORE))
def test_every_entry_point_keeps_its_options(module):
    strings = {s for a in parser_of(module)._actions for s in a.option_strings}
    assert set(BEFORE[module].split()) - strings == set()


@pytest.mark.parametrize("module", list(DEFAULTS))
def test_config_options_are_unset_unless_the_entry_point_has_a_default(module):
    parser = parser_of(module)
    args = parser.parse_args(["--study", "temperature"] if module == "tuner.study" else [])
    for name in options.given_fields(args) - set(DEFAULTS[module]):
        pytest.fail(f"{module}: --{name} is set without being given")
    for name, value in DEFAULTS[module].items():
        assert getattr(args, name) == value, name
    assert args.assignments == []


def test_run_has_an_option_for_every_cli_field_typed_by_the_schema(capsys):
    from trainables.run import build_parser, config_from_args

    parser = build_parser()
    dests = {a.dest for a in parser._actions}
    assert {f.name for f in options.cli_fields()} <= dests
    args = parser.parse_args(["--epochs", "4", "--no-group-by-length", "--bf16", "--quiz-fraction", "0.2",
                              "--set", "epochs=5", "--student-layers", "2"])
    cfg = config_from_args(args)
    assert (cfg.epochs, cfg.group_by_length, cfg.bf16, cfg.quiz_fraction, cfg.student_layers) == (5, False, True,
                                                                                                    0.2, 2)
    with pytest.raises(SystemExit):  # a number is checked by the parser with the schema's message
        parser.parse_args(["--epochs", "two"])
    assert "epochs='two' is not a valid int" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"quiz_fraction must be in \(0, 1\), got 1.0"):
        config_from_args(parser.parse_args(["--quiz-fraction", "1"]))


def test_help_shows_types_valid_values_and_defaults(capsys):
    from trainables.run import build_parser

    text = build_parser().format_help()
    assert "--quiz-policy {meta-only,all-methods}" in text and "(default meta-only)" in text
    assert "--no-bf16" in text
    assert "alpha (float, in [0, 1]; default 0.5): weight of the distillation term" in text
    assert "update_strategy (str, {first, last, skip, both}; default skip)" in text
    assert "  reptile-distil:\n" in text and "  every method:\n" in text


def test_the_readme_option_table_is_the_generated_one():
    readme = (REPO_ROOT / "README.md").read_text()
    begin = readme.index("<!-- options-table:begin")
    begin = readme.index("\n", begin) + 1
    end = readme.index("<!-- options-table:end -->")
    assert readme[begin:end].strip() == options.markdown_table(), \
        "README option table is stale: paste the output of python -m trainables.options --markdown"


def test_every_field_is_declared_with_the_schema():
    from trainables.schema import GROUPS

    for f in config.fields():
        assert f.metadata["kind"] in ("hparam", "setup") and f.metadata["group"] in GROUPS, f.name
        assert f.metadata["help"], f"{f.name} has no help"


def test_choices_and_ranges_come_from_one_place():
    from search_spaces import DEFAULT_RANGES
    from trainables.augment import NOISE_TOKENS
    from trainables.layer_maps import PKD_MAPS, STRATEGIES
    from trainables.losses import SOFT_LOSSES

    for name, source in (("update_strategy", STRATEGIES), ("pkd_layer_map", PKD_MAPS),
                         ("noise_token", NOISE_TOKENS), ("kd_loss", SOFT_LOSSES)):
        assert config.field_choices(name) == list(source)
        assert list(DEFAULT_RANGES[name].choices) == list(source)
    lam = config._fields()["student_lr"].metadata["search"]
    assert (DEFAULT_RANGES["student_lr"].low, DEFAULT_RANGES["student_lr"].high) == (lam["low"], lam["high"])


@pytest.mark.parametrize("values, message", [
    ({"student_layers": 0}, "student_layers must be >= 1, got 0"),
    ({"alpha": 1.5}, "alpha must be in [0, 1], got 1.5"),
    ({"max_train_samples": 0}, "max_train_samples must be >= 1, got 0"),
    ({"teacher_finetune_lr": 0}, "teacher_finetune_lr must be in (0, 1], got 0.0"),
    ({"reptile_mu": 2}, "reptile_mu must be in (0, 1], got 2.0"),
    ({"eval_steps": -1}, "eval_steps must be >= 0, got -1"),
])
def test_bounds_from_the_schema(values, message):
    with pytest.raises(UserError) as info:
        DistillConfig(**values)
    assert str(info.value) == message


def test_method_options_live_with_their_class():
    from trainables.methods import METHODS, owners

    assert owners("update_strategy") == ["reptile-distil"]
    assert owners("meta_interval") == ["metadistil", "meta-adaptive-kd", "reptile-distil"]  # the MetaSteps mixin
    assert owners("alpha") == []  # a shared option
    assert METHODS["reptile-distil"].baseline == {"temperature": 5.0, "alpha": 0.5, "update_strategy": "skip"}
