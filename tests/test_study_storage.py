"""--study-storage: a second sweep with the same study name continues the first one's Optuna study."""

from __future__ import annotations

import json

import optuna
import pytest

from ray_fixtures import tiny_cli_args
from tuner import launch, study_storage
from trainables.errors import UserError

pytestmark = pytest.mark.slow


def test_a_second_sweep_continues_the_persistent_study(ray_session, tiny_config, mlflow_uri, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    common = ["--method", "kd", *tiny_cli_args(tiny_config), "--num-samples", "1", "--scheduler", "fifo",
              "--study-storage", storage, "--study-name", "kd-continued", "--mlflow-uri", mlflow_uri,
              "--experiment", "test-study-storage", "--storage-path", str(tmp_path / "store"), "--quiet"]
    first = launch.main([*common, "--name", "first"])
    study = optuna.load_study(study_name="kd-continued", storage=storage)
    assert len(study.trials) == 1
    baseline = study.trials[0].params  # the first sweep opened the study with the defaults baseline
    assert baseline["alpha"] == 0.5 and baseline["temperature"] == 2.0

    out = tmp_path / "second.json"
    second = launch.main([*common, "--name", "second", "--output-json", str(out)])
    study = optuna.load_study(study_name="kd-continued", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2  # the second sweep's trial joined the first one's
    assert complete[1].params != baseline  # no second defaults baseline: TPE sampled from the study
    assert json.loads(out.read_text())["optuna_study"] == {"name": "kd-continued", "storage": storage,
                                                           "complete_trials": 2}
    assert first["best_metric"] is not None and second["best_metric"] is not None


def test_the_mlflow_file_and_bad_urls_are_refused(tmp_path):
    mlflow = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(UserError, match="is the MLflow store: .*alembic_version.*optuna.db"):
        study_storage.check(mlflow, mlflow)
    with pytest.raises(UserError, match="expected a database URL"):
        study_storage.check("optuna", mlflow)
    assert study_storage.check("x/optuna.db", mlflow).startswith("sqlite:////")
    with pytest.raises(UserError, match="--study-storage nosuchdriver://h/db: cannot open it"):
        study_storage.open_storage("nosuchdriver://h/db")
