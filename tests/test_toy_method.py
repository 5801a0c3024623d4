"""Adding a method is one file and one registry line (issue #11, "done when"): the toy method of
``tests/toy_method.py``, registered with :func:`trainables.methods.register`, is runnable from
``trainables.run``, searchable by ``tuner.launch``, listed by ``--list`` and documented in
``--help``, and no file of the project names it."""

from __future__ import annotations

import json

import optuna
import pytest
from toy_method import ToyKD

from conftest import REPO_ROOT
from ray_fixtures import tiny_cli_args
from trainables.config import HPARAMS, DistillConfig
from trainables.errors import UserError
from trainables.methods import METHODS, register, unregister

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def toy():
    register(ToyKD)  # the one registry line
    yield ToyKD
    unregister(ToyKD.name)


def test_no_project_file_names_the_toy_method():
    files = [REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md"),
             *(p for package in ("trainables", "search_spaces", "tuner", "analysis")
               for p in (REPO_ROOT / package).rglob("*.py"))]
    assert [str(p) for p in files if "toy-kd" in p.read_text() or "toy_gamma" in p.read_text()] == []


def test_its_option_is_a_config_field_while_registered(toy):
    assert "toy_gamma" in HPARAMS and METHODS["toy-kd"] is ToyKD
    assert DistillConfig(method="toy-kd").toy_gamma == 0.5
    assert DistillConfig().with_overrides(["toy_gamma=0.3"]).toy_gamma == 0.3
    with pytest.raises(UserError, match=r"toy_gamma must be in \[0, 1\], got 2.0"):
        DistillConfig(toy_gamma=2)
    unregister(ToyKD.name)
    try:
        assert "toy_gamma" not in HPARAMS and "toy-kd" not in METHODS
        with pytest.raises(UserError, match="unknown config key"):
            DistillConfig.from_dict({"toy_gamma": 0.3})
    finally:
        register(ToyKD)


def test_runnable_from_trainables_run(toy, data_dir, tiny_bert, tmp_path):
    from trainables.run import main

    out = tmp_path / "toy.json"
    main(["--method", "toy-kd", "--set", "toy_gamma=0.3", "--task", "sst2", "--data-dir", data_dir,
          "--teacher", tiny_bert, "--teacher-checkpoint", tiny_bert, "--student-layers", "1",
          "--max-train-samples", "32", "--max-eval-samples", "32", "--max-seq-length", "32", "--epochs", "1",
          "--batch-size", "16", "--device", "cpu", "--quiet", "--output-json", str(out)])
    summary = json.loads(out.read_text())
    assert 0.0 <= summary["eval_score"] <= 1.0


def test_documented_in_help_and_listed(toy, capsys):
    from trainables import run
    from tuner import launch

    for main in (run.main, launch.main):
        with pytest.raises(SystemExit):
            main(["--help"])
        out = capsys.readouterr().out
        assert "toy-kd" in out  # among --method's choices
        assert "toy_gamma (float, in [0, 1]; default 0.5): toy-kd: scale of the teacher's logits" in out
    launch.main(["--list"])
    out = capsys.readouterr().out
    assert "  toy-kd             fixed teacher; options: toy_gamma" in out
    assert "  toy-kd:\n    student_lr       [3e-05, 0.0003] log\n    toy_gamma        [0.1, 1]\n" \
           "    alpha            [0.2, 0.8]\n" in out


def test_searchable_by_tuner_launch(toy, tiny_config, tmp_path):
    from tuner import launch, ray_tuner, spec as sweep_spec

    args = launch.build_parser().parse_args(["--method", "toy-kd", *tiny_cli_args(tiny_config),
                                             "--storage-path", str(tmp_path), "--name", "toy"])
    prep = sweep_spec.prepare_sweep(launch.spec_from_args(args))  # everything a sweep checks before Ray
    assert set(prep.space.searched()) == {"student_lr", "toy_gamma", "alpha"}
    assert ray_tuner.default_point(prep)["toy_gamma"] == 0.25  # its baseline is the first trial
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(4):
        trial = study.ask()
        prep.space(trial)
        config = DistillConfig.from_dict({**prep.base, **trial.params})
        assert 0.1 <= config.toy_gamma <= 1.0 and 0.2 <= config.alpha <= 0.8
        study.tell(trial, 0.0)


def test_a_run_records_only_the_hyperparameters_its_method_reads():
    from tuner.mlflow_store import config_params

    kd = config_params({"method": "kd", "task": "sst2", "alpha": 0.7}, "kd")
    assert kd["alpha"] == "0.7" and kd["task"] == "sst2" and kd["student_lr"] == "0.0001"
    assert not {"teacher_lr", "meta_interval", "pilot_update", "inner_lr", "update_strategy"} & set(kd)
    assert "None" not in kd.values()  # unset options (inner_lr, data_dir, ...) are left out
    meta = config_params({"method": "metadistil", "task": "sst2", "inner_lr": 3e-5}, "metadistil")
    assert meta["inner_lr"] == "3e-05" and {"teacher_lr", "meta_interval", "pilot_update"} <= set(meta)
    assert "update_strategy" not in meta
    assert {"inner_lr", "teacher_lr", "update_strategy"} <= set(
        config_params({"method": "reptile-distil", "inner_lr": 1e-4}, "reptile-distil"))
