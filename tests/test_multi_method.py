"""Methods as a searched choice: one Optuna study over kd, metadistil and reptile-distil.

One real sweep (tiny models, real SST-2 rows) is read by the tests below: started through the CLI
in a driver process with ``--budget time``, killed after its first trial finished, then resumed
(``--resume``) in this process to the end. The tests check that every method got trials, that the
per-method table agrees with the MLflow runs, that each trial's run records its own method and
only that method's hyperparameters, that the resume neither lost nor repeated a trial, and that
``analysis.compare`` groups the sweep's runs by method. Cheaper checks (no Ray) cover the joint
space, ``--method auto`` and the bad inputs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow import MlflowClient

from ray_fixtures import TINY_RUN, terminated_in_state, tiny_cli_args
from trainables.errors import UserError
from tuner import launch, method_table, tracking

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ["kd", "metadistil", "reptile-distil"]
EXPERIMENT, NAME = "test-multi", "three-methods"


@pytest.fixture(scope="module")
def multi_sweep(ray_session, data_dir, tiny_bert, sweep_root, mlflow_uri, tmp_path_factory):
    """The three-method sweep, killed after its first trial and resumed; its summary and store."""
    tmp = tmp_path_factory.mktemp("multi")
    store = tmp / "store"
    cfg = {**TINY_RUN, "data_dir": data_dir, "teacher": tiny_bert, "cache_dir": str(sweep_root / "teacher-cache")}
    cmd = [sys.executable, "-m", "tuner.launch", "--methods", ",".join(METHODS), *tiny_cli_args(cfg),
           "--evals-per-epoch", "1", "--num-samples", "3", "--max-concurrent", "1", "--budget", "time",
           "--address", ray_session, "--mlflow-uri", mlflow_uri, "--experiment", EXPERIMENT,
           "--storage-path", str(store), "--name", NAME, "--quiet"]
    driver = subprocess.Popen(cmd, cwd=str(tmp), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": REPO})
    deadline, done = time.time() + 150, set()
    try:
        while time.time() < deadline and driver.poll() is None and not done:
            done = terminated_in_state(str(store / NAME))
            time.sleep(0.3)
    finally:
        driver.send_signal(signal.SIGKILL)
        _, err = driver.communicate(timeout=30)
    assert done, f"no trial finished before the deadline: {err.decode()[-2000:]}"
    before = {r.data.tags[tracking.TAG_TRIAL_ID]: r.info.run_id for r in _trial_runs(mlflow_uri)}
    out = tmp / "summary.json"
    summary = launch.main(["--resume", "--name", NAME, "--storage-path", str(store), "--output-json", str(out),
                           "--quiet"])
    return {"summary": summary, "written": json.loads(out.read_text()), "done_before": done,
            "runs_before": before, "store": store, "uri": mlflow_uri}


def _trial_runs(uri: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`distill.sweep` = '{NAME}' and "
                              f"tags.`{tracking.TAG_ROLE}` = '{tracking.ROLE_TRIAL}'", max_results=100)


def _parent(uri: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`distill.sweep` = '{NAME}' and "
                              f"tags.`{tracking.TAG_ROLE}` = '{tracking.ROLE_SWEEP}'")[0]


@pytest.mark.slow
def test_every_method_gets_trials_and_the_table_agrees_with_mlflow(multi_sweep):
    s = multi_sweep["summary"]
    assert s["method"] == "multi" and s["methods"] == METHODS
    assert s["num_trials"] == 3 and s["counts"]["TERMINATED"] + s["counts"]["EARLY_STOPPED"] == 3
    assert s["search"]["budget"] == {"budget": "time", "time_attr": "step_seconds",
                                     "unit": "measured training seconds"}
    rows = {r["method"]: r for r in s["per_method"]}
    assert list(rows) == METHODS and all(rows[m]["trials"] >= 1 for m in METHODS)
    assert sum(r["trials"] for r in rows.values()) == 3
    assert multi_sweep["written"]["per_method"] == json.loads(json.dumps(s["per_method"], default=str))

    runs = _trial_runs(multi_sweep["uri"])
    assert len(runs) == 3
    for method in METHODS:
        mine = [r for r in runs if r.data.tags[tracking.TAG_METHOD] == method]
        assert len(mine) == rows[method]["trials"]
        assert all(r.data.params["method"] == method and r.info.run_name.startswith(method + " ") for r in mine)
        best = max(r.data.metrics["best_eval_score"] for r in mine)
        assert rows[method]["best_score"] == pytest.approx(best)
        top = [r for r in mine if r.data.tags[tracking.TAG_TRIAL_ID] == rows[method]["best_trial_id"]]
        assert top and top[0].data.metrics["best_eval_score"] == pytest.approx(best)
        # the run records its method's hyperparameters only
        assert ("update_strategy" in mine[0].data.params) == (method == "reptile-distil")
        assert ("pilot_update" in mine[0].data.params) == (method == "metadistil")
        assert ("teacher_lr" in mine[0].data.params) == (method != "kd")
    overall = max(runs, key=lambda r: r.data.metrics["best_eval_score"])
    assert s["best_metric"] == pytest.approx(overall.data.metrics["best_eval_score"])
    assert rows[s["winner"]]["best_score"] == pytest.approx(s["best_metric"])

    parent = _parent(multi_sweep["uri"])
    assert parent.data.tags[method_table.TAG_WINNER] == s["winner"]
    assert parent.data.tags[method_table.TAG_METHODS] == ",".join(METHODS)
    assert parent.data.params["sweep.methods"] == ",".join(METHODS) and parent.data.params["sweep.budget"] == "time"
    for method in METHODS:
        assert parent.data.metrics[f"method.{method}.num_trials"] == rows[method]["trials"]
        assert parent.data.metrics[f"method.{method}.best_eval_score"] == pytest.approx(rows[method]["best_score"])
    table = json.loads(open(MlflowClient(multi_sweep["uri"]).download_artifacts(
        parent.info.run_id, method_table.ARTIFACT)).read())
    assert [r["method"] for r in table["per_method"]] == METHODS and table["winner"] == s["winner"]


@pytest.mark.slow
def test_the_resumed_sweep_kept_its_methods_and_repeated_no_trial(multi_sweep):
    s = multi_sweep["summary"]
    record = json.loads((multi_sweep["store"] / NAME / "distill_sweep.json").read_text())
    assert record["spec"]["methods"] == METHODS and record["spec"]["budget"] == "time"
    assert len(multi_sweep["done_before"]) < 3, "the sweep finished before it could be interrupted"
    assert multi_sweep["done_before"] <= {t["trial_id"] for t in s["trials"]}
    runs = _trial_runs(multi_sweep["uri"])
    ids = [r.data.tags[tracking.TAG_TRIAL_ID] for r in runs]
    assert len(ids) == len(set(ids)) == 3  # one run per trial
    for tid in multi_sweep["done_before"]:  # a finished trial kept its run
        assert multi_sweep["runs_before"][tid] in {r.info.run_id for r in runs}
    assert {t["config"]["method"] for t in s["trials"]} == set(METHODS)


@pytest.mark.slow
def test_compare_groups_the_sweeps_runs_by_method(multi_sweep):
    from analysis.compare import compare_table
    from analysis.store import Store

    runs = Store(multi_sweep["uri"], EXPERIMENT).runs("sst2", sweep=NAME)
    table = compare_table(runs, "sst2").set_index("method")
    rows = {r["method"]: r for r in multi_sweep["summary"]["per_method"]}
    assert sorted(table.index) == sorted(METHODS)
    for method in METHODS:
        assert table.loc[method, "n_runs"] == rows[method]["trials"]
        assert table.loc[method, "accuracy_best"] == pytest.approx(rows[method]["best_score"])


@pytest.mark.slow
def test_the_method_search_figure_reads_the_sweep(multi_sweep, tmp_path):
    from analysis import method_search

    points = method_search.main(["--sweep", NAME, "--mlflow-uri", multi_sweep["uri"], "--experiment", EXPERIMENT,
                                 "--out", str(tmp_path)])
    for r in multi_sweep["summary"]["per_method"]:
        mine = points[points["method"] == r["method"]]
        assert list(mine["trial"]) == list(range(1, r["trials"] + 1))
        assert mine["best_so_far"].iloc[-1] == pytest.approx(r["best_score"])
        assert mine["seconds_so_far"].iloc[-1] == pytest.approx(r["training_seconds"], rel=1e-6)
    assert (tmp_path / "method_search.png").stat().st_size > 0 and (tmp_path / "method_search.csv").exists()


# ---- no Ray ----------------------------------------------------------------------------------------

def test_the_joint_space_namespaces_each_methods_parameters():
    from search_spaces.multi import build_multi_space

    space = build_multi_space(["pkd", "meta-adaptive-kd", "kd"], fixed={"batch_size": 16})
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    for point in space.default_points({"student_lr": 1e-4, "alpha": 0.5, "temperature": 2.0, "beta": None}):
        study.enqueue_trial(point)
    seen = []
    for i in range(9):
        trial = study.ask()
        config = space(trial)
        study.tell(trial, 0.5 + 0.01 * i)
        method = config["method"]
        seen.append(method)
        # the config has plain names; Optuna records them under the method
        assert {k for k in trial.params if k != "method"} == {f"{method}.{k}" for k in config
                                                             if k not in ("method", "batch_size")}
        assert config["batch_size"] == 16
        if "beta" in config:  # pkd's beta is in [10, 1000] (log), meta-adaptive-kd's in [0, 1]: one study
            assert (10 <= config["beta"] <= 1000) if method == "pkd" else (0 <= config["beta"] <= 1)
    assert seen[:3] == ["pkd", "meta-adaptive-kd", "kd"]  # the baselines first, in the given order
    assert seen[2] == "kd" and study.trials[2].params == {"method": "kd", "kd.student_lr": 1e-4, "kd.alpha": 0.5,
                                                          "kd.temperature": 2.0}


def test_auto_is_every_method_that_fits_the_pair(tiny_bert, tiny_bert4, tmp_path):
    from tiny_models import make_tiny_bert

    from trainables.config import DistillConfig
    from tuner.method_choice import fitting, resolve

    fit, unfit = fitting(DistillConfig(teacher=tiny_bert, student_layers=1))  # 2 layers onto 1
    assert fit == ["finetune", "kd", "metadistil", "meta-adaptive-kd", "reptile-distil"]
    assert list(unfit) == ["pkd"] and "intermediate layer" in unfit["pkd"]
    assert "pkd" in resolve(["auto"], DistillConfig(teacher=tiny_bert4, student_layers=2))
    fit, unfit = fitting(DistillConfig(teacher=tiny_bert4, student_layers=3))  # 4 is no multiple of 3
    assert set(unfit) == {"pkd", "reptile-distil"} and "multiple" in unfit["reptile-distil"]
    wide = make_tiny_bert(str(tmp_path / "wide"), layers=2, hidden=64)
    fit, unfit = fitting(DistillConfig(teacher=tiny_bert4, student=wide))
    assert set(unfit) == {"pkd", "reptile-distil"} and "architecture" in unfit["reptile-distil"]


def test_bad_multi_method_input_is_a_clear_error(tiny_config, sweep_root):
    from tuner.spec import SweepSpec, normalise, prepare_sweep

    def spec(method="", **kw):
        return normalise(SweepSpec(method=method, config=tiny_config, storage_path=str(sweep_root / "bad"), **kw))

    with pytest.raises(UserError, match="at least two methods"):
        spec(methods=["kd"])
    with pytest.raises(UserError, match="unknown method 'kdd'"):
        spec(methods=["kd", "kdd"])
    with pytest.raises(UserError, match="fewer than the 3 methods"):
        prepare_sweep(spec(methods=METHODS, num_samples=2))
    with pytest.raises(UserError, match="--grid"):
        prepare_sweep(spec(methods=METHODS, grid={"alpha": [0.5]}))
    with pytest.raises(UserError, match="fifo"):
        prepare_sweep(spec(method="kd", budget="time", scheduler="fifo"))
    with pytest.raises(UserError, match="--scheduler pbt does not compare"):
        prepare_sweep(spec(method="kd", budget="time", scheduler="pbt", num_samples=2))
    with pytest.raises(UserError, match="unknown budget 'wall'"):
        prepare_sweep(spec(method="kd", budget="wall"))
    with pytest.raises(SystemExit) as exit_:
        launch.main(["--method", "kd", "--methods", "kd,pkd", "--task", "sst2"])
    assert exit_.value.code == 2


def test_time_budget_makes_asha_compare_measured_training_seconds(tiny_config, sweep_root):
    from tuner import ray_tuner
    from tuner.spec import SweepSpec, normalise, prepare_sweep

    for budget, attr in (("time", "step_seconds"), ("steps", "evaluation")):
        spec = normalise(SweepSpec(method="kd", config=tiny_config, budget=budget,
                                   storage_path=str(sweep_root / "budget")))
        _, _, scheduler = ray_tuner._tune_parts(prepare_sweep(spec), spec, "parent", "0", {})
        assert scheduler._time_attr == attr
