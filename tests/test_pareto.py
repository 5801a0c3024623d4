"""Multi-objective sweeps (``--objectives``): the Pareto front's math on hand-made points, the
objectives' and students' checks before Ray starts, the student choice of the search space, and
one real CLI sweep (FIFO, 3 trials of tiny models on real SST-2 rows) read by several tests."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os

import optuna
import pytest

from analysis import pareto
from ray_fixtures import TINY_RUN
from search_spaces.registry import build_space
from search_spaces.students import TRUNCATED, with_students
from search_spaces.ranges import Int
from trainables.errors import UserError
from tuner import launch, objectives
from tuner.spec import SweepSpec, normalise

# ---- the front on hand-made points -----------------------------------------------------------------

MAX_MIN = ("max", "min")


@pytest.mark.parametrize("points, modes, front", [
    # (score, params): B and its duplicate D are both on the front; C is beaten by A, G by B; F has no score
    ([(0.9, 100), (0.8, 50), (0.85, 120), (0.8, 50), (0.7, 40), (math.nan, 10), (0.7, 60)], MAX_MIN,
     [0, 1, 3, 4]),
    # equal score, fewer params wins; equal params, higher score wins
    ([(0.8, 100), (0.8, 90), (0.7, 90)], MAX_MIN, [1]),
    # three objectives: (score, params, latency); (0.8, 50, 9) trades latency for size: on the front
    ([(0.9, 100, 5.0), (0.8, 50, 9.0), (0.8, 60, 9.0), (0.9, 100, 6.0), (None, 1, 1)], ("max", "min", "min"),
     [0, 1]),
    # both maximised and both minimised
    ([(1, 2), (2, 1), (2, 2), (0, 0)], ("max", "max"), [2]),
    ([(1, 2), (2, 1), (2, 2), (0, 0)], ("min", "min"), [3]),
    ([], MAX_MIN, []),
])
def test_pareto_front_of_hand_made_points(points, modes, front):
    assert pareto.pareto_front(points, modes) == front


def test_dominance_is_strict():
    assert pareto.dominates((0.9, 10), (0.9, 11), MAX_MIN)
    assert not pareto.dominates((0.9, 10), (0.9, 10), MAX_MIN)      # equal: neither dominates
    assert not pareto.dominates((0.9, 12), (0.8, 10), MAX_MIN)      # a trade-off
    with pytest.raises(ValueError, match="max or min"):
        pareto.pareto_front([(1, 2)], ("up", "min"))


def test_front_frame_sorts_labels_and_tables():
    rows = [{"trial_id": "a", "method": "kd", "student_id": "/t[:2]", "student_layers": 2,
             "eval_score": 0.8, "student_params": 50},
            {"trial_id": "b", "method": "kd", "student_id": "/models/small-bert", "student_layers": 4,
             "eval_score": 0.9, "student_params": 100},
            {"trial_id": "c", "method": "pkd", "student_id": "/t[:3]", "student_layers": 3,
             "eval_score": 0.85, "student_params": 120}]
    frame = pareto.front_frame(rows, ["eval_score", "student_params"])
    assert list(frame["trial_id"]) == ["b", "a", "c"]          # the front, best score first, then the rest
    assert list(frame["on_front"]) == [True, True, False]
    assert list(frame["label"]) == ["kd small-bert", "kd 2L", "pkd 3L"]
    table = pareto.markdown(frame, ["eval_score", "student_params"], "t")
    assert "2 of 3 trials on the Pareto front of eval_score (max), student_params (min)" in table
    assert "| b | kd small-bert | 0.9 | 100 |" in table and "| c |" not in table


def test_no_finished_trial_is_an_empty_front_not_an_error(tmp_path):
    frame = pareto.front_frame([], ["eval_score", "latency_ms"])
    assert frame.empty and list(frame.columns)[:7] == [*pareto.ID_COLUMNS, "eval_score", "latency_ms"]
    paths = pareto.write_outputs(frame, ["eval_score", "latency_ms"], str(tmp_path), "t")
    assert "0 of 0 trials" in open(paths["md"]).read() and os.path.getsize(paths["png"]) > 0


# ---- objectives and students: checked before Ray starts ---------------------------------------------

@pytest.mark.parametrize("value, message", [
    ("eval_score,size", "unknown objective(s) 'size' in --objectives; valid: eval_score, student_params, "
                        "latency_ms, latency_ms_b32"),
    ("student_params,latency_ms", "--objectives must include eval_score"),
    ("eval_score", "--objectives needs at least two objectives"),
    ("eval_score,latency_ms,latency_ms", "--objectives names latency_ms more than once"),
])
def test_bad_objectives(value, message):
    with pytest.raises(UserError) as info:
        objectives.parse_objectives(value)
    assert message in str(info.value)


def test_objectives_are_the_searchers_metric_and_mode():
    assert objectives.metrics_and_modes(["eval_score", "latency_ms_b32"]) == (["eval_score", "latency_ms_b32"],
                                                                              ["max", "min"])
    assert objectives.metrics_and_modes(None) == ("eval_score", "max")


@pytest.mark.parametrize("settings, message", [
    ({"grid": {"alpha": [0, 1]}}, "--objectives needs the Optuna search"),
    ({"study_storage": "sqlite:///x.db"}, "--objectives cannot continue a --study-storage study"),
    ({"config": {"student": "x"}, "students": "a,b"}, "give either --student (x) or --students (a,b)"),
    ({"students": "a,a"}, "--students names a more than once"),
])
def test_bad_multi_objective_specs(settings, message, tmp_path):
    spec = SweepSpec(method="kd", objectives="eval_score,student_params", storage_path=str(tmp_path),
                     mlflow_uri="sqlite:///" + str(tmp_path / "m.db"), **settings)
    with pytest.raises(UserError) as info:
        objectives.check_spec(spec)
    assert message in str(info.value)


def test_a_student_that_does_not_load_fails_before_ray(tiny_config, tmp_path):
    from tuner.spec import prepare_sweep

    spec = normalise(SweepSpec(method="kd", config=tiny_config, objectives="eval_score,student_params",
                               students=f"{TRUNCATED},/no/such/student", storage_path=str(tmp_path),
                               mlflow_uri="sqlite:///" + str(tmp_path / "m.db")))
    with pytest.raises(UserError, match="/no/such/student"):
        prepare_sweep(spec)


def test_asha_asked_for_runs_fifo(tmp_path, capsys):
    spec = normalise(SweepSpec(method="kd", objectives="eval_score,latency_ms", scheduler="asha",
                               storage_path=str(tmp_path), mlflow_uri="sqlite:///" + str(tmp_path / "m.db")))
    assert spec.scheduler_name == "fifo" and spec.objectives == ["eval_score", "latency_ms"]
    assert "a multi-objective search runs the FIFO scheduler" in capsys.readouterr().err
    quiet = normalise(SweepSpec(method="kd", objectives=["eval_score", "student_params"], storage_path=str(tmp_path),
                                mlflow_uri="sqlite:///" + str(tmp_path / "m.db")))
    assert quiet.scheduler_name == "fifo" and not capsys.readouterr().err


def test_student_choice_samples_layers_only_for_the_truncated_student():
    space = with_students(build_space("kd"), [TRUNCATED, "/models/small"], Int(1, 4))
    named = space(optuna.trial.FixedTrial({"student_lr": 1e-4, "alpha": 0.5, "temperature": 2.0,
                                           "batch_size": 16, "student": "/models/small"}))
    assert named["student"] == "/models/small"
    truncated_trial = optuna.trial.FixedTrial({"student_lr": 1e-4, "alpha": 0.5, "temperature": 2.0,
                                               "batch_size": 16, "student": TRUNCATED, "student_layers": 3})
    assert space(truncated_trial)["student"] is None       # the default student in the trial's config
    study = optuna.create_study()
    trial = study.ask()
    config = space(trial)
    assert ("student_layers" in trial.params) == (trial.params["student"] == TRUNCATED)
    assert config["student"] == (None if trial.params["student"] == TRUNCATED else "/models/small")
    assert with_students(build_space("kd"), None, None).fn is build_space("kd").fn  # nothing added


def test_a_named_students_run_records_no_truncated_layer_count():
    from tuner.mlflow_store import config_params

    assert config_params({"method": "kd", "student_layers": 3}, "kd")["student_layers"] == "3"
    named = config_params({"method": "kd", "student": "/models/small", "student_layers": 3}, "kd")
    assert "student_layers" not in named and named["student"] == "/models/small"


# ---- one real sweep from the CLI ------------------------------------------------------------------

OBJECTIVES = ["eval_score", "student_params", "latency_ms"]


@pytest.fixture(scope="module")
def pareto_sweep(ray_session, data_dir, tiny_bert, tiny_bert4, sweep_root, mlflow_uri):
    """kd on SST-2 with a 4-layer tiny teacher, 3 trials, objectives score/params/latency, the
    student chosen among the truncated one (1..4 layers searched) and the 2-layer tiny BERT;
    ``--scheduler asha`` asked for (FIFO runs)."""
    cfg = {**TINY_RUN, "data_dir": data_dir, "teacher": tiny_bert4, "cache_dir": str(sweep_root / "teacher-cache")}
    argv = ["--method", "kd", "--task", "sst2", "--data-dir", data_dir, "--teacher", tiny_bert4,
            "--teacher-epochs", "1", "--max-train-samples", str(cfg["max_train_samples"]),
            "--max-eval-samples", "32", "--max-seq-length", "32", "--batch-size", "16", "--epochs", "1",
            "--cache-dir", cfg["cache_dir"], "--num-samples", "3", "--max-concurrent", "2",
            "--evals-per-epoch", "1", "--objectives", ",".join(OBJECTIVES), "--scheduler", "asha",
            "--students", f"{TRUNCATED},{tiny_bert}", "--storage-path", str(sweep_root / "pareto-store"),
            "--mlflow-uri", mlflow_uri, "--experiment", "test-pareto", "--name", "pareto", "--quiet"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        summary = launch.main(argv)
    return {"summary": summary, "stderr": err.getvalue(), "tiny_bert": tiny_bert, "mlflow_uri": mlflow_uri,
            "dir": str(sweep_root / "pareto-store" / "pareto")}


def test_the_sweep_runs_fifo_and_every_trial_measures_its_costs(pareto_sweep):
    summary = pareto_sweep["summary"]
    assert "a multi-objective search runs the FIFO scheduler" in pareto_sweep["stderr"]
    assert "MLflow logging" not in pareto_sweep["stderr"]   # a named student's runs are tracked too
    assert summary["search"]["scheduler"] == "fifo" and summary["counts"]["TERMINATED"] == 3
    for trial in summary["trials"]:
        m, student = trial["metrics"], trial["config"].get("student")
        assert m["latency_ms"] > 0 and m["latency_ms_b32"] > 0 and m["student_params"] > 0
        if student is None:   # the truncated student: its layer count was searched within the teacher's
            assert 1 <= trial["config"]["student_layers"] <= 4 == m["teacher_layers"]
            assert m["student_layers"] == trial["config"]["student_layers"]
        else:
            assert student == pareto_sweep["tiny_bert"] and m["student_layers"] == 2


def test_the_front_is_pareto_optimal_and_its_students_are_saved(pareto_sweep):
    summary, section = pareto_sweep["summary"], pareto_sweep["summary"]["pareto"]
    assert section["objectives"] == OBJECTIVES and section["modes"] == ["max", "min", "min"]
    values = {t["trial_id"]: [t["metrics"][o] for o in OBJECTIVES] for t in summary["trials"]}
    on_front = {row["trial_id"] for row in section["front"]}
    modes = section["modes"]
    for tid, point in values.items():   # no trial beats a front trial; a trial off the front is beaten
        beaten = any(pareto.dominates(other, point, modes) for o, other in values.items() if o != tid)
        assert beaten == (tid not in on_front)
    best = max(section["front"], key=lambda r: r["eval_score"])
    assert summary["best_trial_id"] == section["best_trial_id"] == best["trial_id"]
    for row in section["front"]:
        assert os.path.isfile(os.path.join(row["student_path"], "config.json"))
        assert os.path.isfile(os.path.join(row["student_path"], "tokenizer_config.json"))
    assert sorted(os.listdir(section["students_dir"])) == sorted(on_front)
    for kind in ("csv", "md", "png", "pdf"):
        assert os.path.getsize(section["files"][kind]) > 0
        assert section["files"][kind] == os.path.join(pareto_sweep["dir"], "pareto", f"pareto.{kind}")


def test_optuna_searched_every_objective(pareto_sweep):
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    searcher = ConcurrencyLimiter(OptunaSearch(), max_concurrent=1)
    searcher.restore_from_dir(pareto_sweep["dir"])
    study = searcher.searcher._ot_study
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    front = {tuple(row[o] for o in OBJECTIVES) for row in pareto_sweep["summary"]["pareto"]["front"]}
    assert {tuple(t.values) for t in study.best_trials} == front   # Optuna's own front is ours


def test_the_front_is_remade_from_mlflow(pareto_sweep, tmp_path, capsys):
    paths = pareto.main(["--sweep", "pareto", "--experiment", "test-pareto", "--mlflow-uri",
                         pareto_sweep["mlflow_uri"], "--out", str(tmp_path)])
    assert "on the Pareto front of eval_score (max), student_params (min), latency_ms (min)" in capsys.readouterr().out
    import pandas as pd

    frame = pd.read_csv(paths["csv"], dtype={"trial_id": str})
    section = pareto_sweep["summary"]["pareto"]
    assert set(frame.loc[frame["on_front"], "trial_id"]) == {r["trial_id"] for r in section["front"]}
    assert os.path.getsize(paths["png"]) > 0 and os.path.getsize(paths["pdf"]) > 0
    with open(os.path.join(pareto_sweep["dir"], "summary.json")) as fh:
        assert json.load(fh)["pareto"]["best_trial_id"] == section["best_trial_id"]


def test_methods_and_objectives_search_the_method_and_the_student_together(tiny_config, tiny_bert4, tmp_path):
    """``--methods kd,metadistil --objectives ...``: one study draws the method, then that method's
    hyperparameters and the truncated student's layer count (1 .. the teacher's 4)."""
    import optuna

    from tuner.spec import prepare_sweep

    spec = normalise(SweepSpec(method="kd", methods=["kd", "metadistil"], config={**tiny_config, "teacher": tiny_bert4},
                               objectives="eval_score,student_params", num_samples=4, storage_path=str(tmp_path),
                               mlflow_uri="sqlite:///" + str(tmp_path / "m.db")))
    prep = prepare_sweep(spec)
    assert spec.scheduler_name == "fifo"
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        config = prep.space(trial)
        method = config["method"]
        layers = trial.params[f"{method}.student_layers"]
        assert 1 <= layers <= 4 and config["student_layers"] == layers
        seen.add((method, layers))
        study.tell(trial, [0.5, float(layers)])
    assert {m for m, _ in seen} == {"kd", "metadistil"} and len({n for _, n in seen}) > 1
