"""analysis.store / compare / dynamics against a real SQLite MLflow store filled with known numbers."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from analysis import compare, dynamics
from analysis.store import Store, best_hparams
from analysis_fill import Filler
from trainables.errors import UserError

KD_SEEDS = {42: 0.86, 43: 0.87, 44: 0.88}        # the best kd config, re-run with 3 seeds
KD_SPEEDUP = {42: 1.9, 43: 2.0, 44: 2.1}
KD_SECONDS = {42: 100.0, 43: 110.0, 44: 120.0}
TEACHER_CURVE = [(10, 0.92), (20, 0.90), (30, 0.88)]
STUDENT_CURVE = [(10, 0.60), (20, 0.91), (30, 0.89)]   # best at step 20
STEP_LOGS = pd.DataFrame({"step": [1, 2, 3, 4], "loss": [0.9, 0.8, 0.7, 0.6],
                          "alpha": [0.5, 0.45, 0.4, 0.35], "beta": [0.5, 0.55, 0.6, 0.65]})


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    f = Filler(str(root / "mlflow.db"))
    ids = {}
    f.trial("finetune", 0.80, student_lr=1e-5, metrics={"train_seconds": 50.0})
    ids["finetune_best"] = f.trial("finetune", 0.82, student_lr=3e-5, metrics={"train_seconds": 60.0})
    f.trial("kd", 0.84, alpha=0.3, temperature=4.0)
    f.trial("kd", 0.85, alpha=0.7, temperature=4.0)
    for seed, score in KD_SEEDS.items():
        ids[f"kd_{seed}"] = f.trial("kd", score, alpha=0.5, temperature=4.0, seed=seed,
                                    sweep="sweep-a" if seed == 42 else "kd-seeds", seed_rerun=seed != 42,
                                    metrics={"speedup": KD_SPEEDUP[seed], "train_seconds": KD_SECONDS[seed],
                                             "step_ms": 100.0 + seed - 42, "peak_mem_mb": 2048.0})
    f.trial("pkd", None, status="ERROR")
    f.trial("pkd", 0.83, beta=100.0)
    ids["metadistil"] = f.trial("metadistil", 0.91, eval_teacher=True, history={
        "eval_score": STUDENT_CURVE, "eval_accuracy": STUDENT_CURVE,
        "teacher_eval_score": TEACHER_CURVE, "teacher_eval_accuracy": TEACHER_CURVE})
    ids["mak"] = f.trial("meta-adaptive-kd", 0.81, step_logs=STEP_LOGS,
                         history={"train_alpha": [(2, 0.47), (4, 0.37)], "train_beta": [(2, 0.53), (4, 0.63)]})
    f.trial("metadistil", 0.95, study="temperature", temperature=1.0)  # a study run: not in the table
    f.trial("kd", 0.40, task="cola")
    ids["kd_plain"] = f.trial("kd", 0.79, task="cola", alpha=0.1)
    return f, ids


def test_runs_are_typed_and_failed_trials_left_out(filled):
    f, _ = filled
    runs = Store(f.uri).runs("sst2")
    assert len(runs) == 11 and set(runs["method"]) == {"finetune", "kd", "pkd", "metadistil", "meta-adaptive-kd"}
    assert str(runs["seed"].dtype) == "Int64" and runs["alpha"].dtype == float
    assert str(runs["pilot_update"].dtype) == "boolean" and runs["inner_lr"].isna().all()
    assert str(runs["student_params"].dtype) == "Int64" and (runs["student_params"] == 11_000_000).all()
    assert runs.loc[runs["seed"] == 43, "seed_rerun"].iloc[0]
    assert len(Store(f.uri).runs("sst2", include_failed=True)) == 12


def test_compare_table_holds_the_numbers_put_in(filled):
    f, ids = filled
    table = compare.compare_table(Store(f.uri).runs("sst2", exclude_studies=True), "sst2")
    assert list(table["method"]) == ["metadistil", "kd", "pkd", "finetune", "meta-adaptive-kd"]
    kd = table.set_index("method").loc["kd"]
    scores = np.array(list(KD_SEEDS.values()))
    assert kd["selection"] == "seeds" and kd["n_seeds"] == 3 and kd["n_runs"] == 5
    assert kd["accuracy_mean"] == pytest.approx(scores.mean(), abs=1e-12)
    assert kd["accuracy_std"] == pytest.approx(scores.std(ddof=1), abs=1e-12)  # sample std, ddof=1
    assert kd["accuracy_std"] == pytest.approx(0.01, abs=1e-12)
    assert kd["accuracy_best"] == 0.88 and kd["best_run_id"] == ids["kd_44"]
    assert kd["speedup"] == pytest.approx(2.0) and kd["train_seconds"] == pytest.approx(110.0)
    assert kd["param_ratio"] == pytest.approx(2.0) and kd["student_params"] == 11_000_000
    assert kd["step_ms"] == pytest.approx(101.0) and kd["peak_mem_mb"] == pytest.approx(2048.0)  # cost columns
    assert set(kd["run_ids"].split(";")) == {ids["kd_42"], ids["kd_43"], ids["kd_44"]}
    ft = table.set_index("method").loc["finetune"]
    assert ft["selection"] == "best" and ft["n_seeds"] == 1 and ft["n_runs"] == 2
    assert ft["accuracy_mean"] == 0.82 and np.isnan(ft["accuracy_std"]) and ft["train_seconds"] == 60.0
    assert table.set_index("method").loc["pkd", "n_runs"] == 1  # the ERROR trial is left out


def test_compare_cli_writes_table_csv_and_plot(filled, tmp_path, capsys):
    f, _ = filled
    out = tmp_path / "cmp"
    table = compare.main(["--task", "sst2", "--mlflow-uri", f.uri, "--out", str(out)])
    printed = capsys.readouterr().out
    for name in ("compare.md", "compare.csv", "compare.png"):
        assert (out / name).stat().st_size > 0
    assert "| kd | 11.0M | 2.0× | 2.00× | 87.00 ± 1.00 | 88.00 | 3 | 5 | 110.0 s | 101 | 2.00 GB |" in printed
    assert sum(line.startswith("| ") for line in printed.splitlines()) == 1 + 5  # header + methods
    csv = pd.read_csv(out / "compare.csv")
    pd.testing.assert_frame_equal(csv[["method", "accuracy_mean", "n_seeds"]],
                                  table[["method", "accuracy_mean", "n_seeds"]], check_dtype=False)
    plotted = compare.write_outputs(table, str(tmp_path / "again"), task="sst2", experiment="e",
                                    uri=f.uri)["plotted"]
    assert list(plotted["method"]) == list(table["method"])
    assert np.allclose(plotted["value"], table["accuracy_mean"])
    assert np.allclose(plotted["error"], table["accuracy_std"].fillna(0.0))
    assert list(plotted["n"]) == [1, 3, 1, 1, 1]


def test_best_hparams_of_a_method(filled):
    f, ids = filled
    hp, run_id = best_hparams(Store(f.uri), "cola", "kd")
    assert run_id == ids["kd_plain"] and hp["alpha"] == 0.1 and hp["inner_lr"] is None
    assert isinstance(hp["student_layers"], int) and isinstance(hp["pilot_update"], bool)
    assert best_hparams(Store(f.uri), "cola", "pkd") is None


@pytest.mark.parametrize("argv,message", [
    (["--task", "mrpc"], r"no runs for task 'mrpc' in experiment 'distill-tune' at sqlite:///.*\(tasks with runs: cola, sst2\)"),
    (["--task", "sst2", "--experiment", "nope"], r"no experiment 'nope' at .*experiments there: .*distill-tune"),
    (["--task", "sst2", "--methods", "tinybert"], r"no runs of method tinybert for task 'sst2'.*methods with runs: finetune, kd"),
])
def test_nothing_to_compare_is_a_clear_user_error(filled, tmp_path, argv, message, capsys):
    f, _ = filled
    argv = argv + ["--mlflow-uri", f.uri, "--out", str(tmp_path / "x")]
    with pytest.raises(SystemExit) as exc:
        compare.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    import re
    assert re.search(message, err), err
    assert not (tmp_path / "x").exists()


def test_missing_store_is_not_created(tmp_path):
    uri = f"sqlite:///{tmp_path}/none.db"
    with pytest.raises(UserError, match="no MLflow store at .*none.db does not exist"):
        Store(uri)
    assert not os.path.exists(tmp_path / "none.db")


def test_dynamics_alpha_beta_and_teacher_student(filled, tmp_path):
    f, ids = filled
    store = Store(f.uri)
    out = dynamics.plot_run(store, ids["mak"], str(tmp_path))
    assert set(out) == {"alpha-beta"}
    ab = out["alpha-beta"]
    pd.testing.assert_frame_equal(ab["data"], STEP_LOGS[["step", "alpha", "beta"]], check_dtype=False)
    assert os.path.getsize(ab["png"]) > 0 and pd.read_csv(ab["csv"]).shape == (4, 3)

    out = dynamics.main(["--experiment", "distill-tune", "--method", "metadistil", "--task", "sst2",
                         "--mlflow-uri", f.uri, "--out", str(tmp_path)])
    ts = out["teacher-student"]
    assert list(ts["data"]["step"]) == [10, 20, 30]
    assert list(ts["data"]["teacher"]) == [v for _, v in TEACHER_CURVE]
    assert list(ts["data"]["student"]) == [v for _, v in STUDENT_CURVE]
    assert ids["metadistil"][:8] in ts["png"] and os.path.getsize(ts["png"]) > 0
    # the curve is the evaluations' own: its latest value is the last evaluation, the best one is
    # best_eval_score
    run = store.run(ids["metadistil"])
    assert run["eval_score"] == 0.89 and run["best_eval_score"] == 0.91
    assert list(store.metric_history(ids["metadistil"], ["eval_score"])["eval_score"]) == [0.60, 0.91, 0.89]


def test_dynamics_alpha_beta_falls_back_to_eval_means(filled):
    f, ids = filled
    store = Store(f.uri)
    store.artifact_csv = lambda run_id, path=None: None  # as if the run had no step_logs.csv
    curves = dynamics.alpha_beta_curves(store, ids["mak"])
    assert curves.to_dict("list") == {"step": [2, 4], "alpha": [0.47, 0.37], "beta": [0.53, 0.63]}


def test_dynamics_without_curves_is_a_clear_error(filled, tmp_path, capsys):
    f, ids = filled
    with pytest.raises(SystemExit) as exc:
        dynamics.main(["--run-id", ids["finetune_best"], "--mlflow-uri", f.uri, "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "has no training dynamics to plot" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dynamics.main(["--run-id", "0" * 32, "--mlflow-uri", f.uri])
    assert "no run with id" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dynamics.main(["--method", "kd", "--mlflow-uri", f.uri, "--out", str(tmp_path)])
    assert "no kd trial evaluated its teacher (eval_teacher=true)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dynamics.main(["--mlflow-uri", f.uri])
    assert "give either --run-id ID, or --method M" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("uri, message", [
    ("foo://bar", "unsupported MLflow tracking URI 'foo://bar'"),
    ("http://127.0.0.1:1", "MLflow tracking server http://127.0.0.1:1 is unreachable"),
])
def test_a_bad_tracking_uri_is_one_line_at_once(uri, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        compare.main(["--task", "sst2", "--mlflow-uri", uri, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_an_unwritable_out_folder(filled, tmp_path, capsys):
    f, _ = filled
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exc:
        compare.main(["--task", "sst2", "--mlflow-uri", f.uri, "--out", str(tmp_path / "file" / "x")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err == f"error: --out {tmp_path / 'file' / 'x'} is not a writable folder ({tmp_path / 'file'} is a file)\n"


def test_a_byo_task_by_its_folder_name_with_its_own_metric_names(tmp_path, capsys):
    """A bring-your-own task recorded as a path is compared as ``--task rte``; its primary metric
    is named (not "score") and the eval_steps / eval_teacher settings are not read as metrics."""
    fill = Filler(str(tmp_path / "mlflow.db"))
    task = str(tmp_path / "data" / "rte")
    for method, score in (("kd", 0.61), ("metadistil", 0.64)):
        fill.trial(method, score, task=task, eval_steps=400, metrics={"best_eval_f1": score - 0.1})
    table = compare.main(["--task", "rte", "--mlflow-uri", fill.uri, "--out", str(tmp_path / "out")])
    assert list(table["method"]) == ["metadistil", "kd"]
    assert table["accuracy_mean"].tolist() == [0.64, 0.61] and "f1_mean" in table
    assert not {"steps_mean", "teacher_mean", "score_mean"} & set(table.columns), list(table.columns)
    header = (tmp_path / "out" / "compare.md").read_text()
    assert "| accuracy | f1 | best accuracy |" in header and "steps" not in header.split("\n")[4]


def test_trial_run_names_say_what_the_trial_was():
    from tuner.mlflow_schema import trial_run_name

    name = trial_run_name("kd", {"student_lr": 3.1e-5, "alpha": 0.7, "temperature": 4.0, "batch_size": 16})
    assert name == "kd T=4 α=0.7 λ=3.1e-05 batch_size=16"
    assert trial_run_name("metadistil", {"pilot_update": False, "teacher_lr": 2e-6}) == \
        "metadistil μ=2e-06 pilot_update=False"
