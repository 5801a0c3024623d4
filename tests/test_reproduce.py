"""python -m tuner.reproduce end to end on a local Ray instance and a real SQLite MLflow store: tiny
models on a few rows of real SST-2, kd and metadistil, 2 trials each, best config re-run with 2 seeds."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from mlflow import MlflowClient

from analysis import paper_table
from ray_fixtures import tiny_cli_args
from tuner import reproduce, tracking

pytestmark = pytest.mark.slow


def test_reproduce_end_to_end(ray_session, tiny_config, mlflow_uri, tmp_path):
    args = ["--tasks" if a == "--task" else a for a in tiny_cli_args(tiny_config)]
    out_dir = tmp_path / "out"
    result = reproduce.main([*args, "--methods", "kd,metadistil", "--num-samples", "1", "--seeds", "2",
                             "--evals-per-epoch", "1", "--mlflow-uri", mlflow_uri, "--experiment", "test-repro",
                             "--storage-path", str(tmp_path / "store"), "--name", "repro", "--out",
                             str(out_dir), "--quiet"])
    files = {"reproduce.md", "reproduce.csv", "reproduce_table.csv", "reproduce.png", "reproduce.pdf"}
    assert files <= set(os.listdir(out_dir))

    # the tidy per-seed results: the same 2 seeds for both methods, the teachers they used
    csv = pd.read_csv(out_dir / "reproduce.csv")
    assert list(csv.columns) == paper_table.TIDY_COLUMNS
    dev = csv[(csv["split"] == "dev") & (csv["metric"] == "accuracy")]
    seeds = {m: sorted(dev.loc[dev["method"] == m, "seed"]) for m in ("kd", "metadistil")}
    assert seeds["kd"] == seeds["metadistil"] and len(seeds["kd"]) == 2
    assert len(dev[dev["method"] == "teacher"]) >= 1
    for method in ("kd", "metadistil"):  # the numbers are the seed re-runs' best dev accuracies
        summary = result["summaries"][("sst2", method)]
        assert sorted(summary["seeds"]["scores"]) == sorted(dev.loc[dev["method"] == method, "value"])
        assert summary["seeds"]["seeds"] == seeds[method]
    assert not (csv["split"] == "test").any()  # SST-2 here has no labelled test split

    # the table: teacher first, both methods with n = 2, kd has no Δ, metadistil's Δ is the
    # mean of the paired differences in the CSV
    md = (out_dir / "reproduce.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| Method")]
    cells = [[c.strip() for c in r.split("|")[1:-1]] for r in rows]
    assert [c[0] for c in cells] == ["teacher", "kd", "metadistil"]
    assert cells[1][1] == "2" and cells[2][1] == "2" and "±" in cells[1][-2]
    assert cells[1][-1] == "—" and "ttest_rel" in md
    kd = dev[dev["method"] == "kd"].set_index("seed")["value"]
    meta = dev[dev["method"] == "metadistil"].set_index("seed")["value"]
    delta = (meta - kd.loc[meta.index]).mean()
    table = pd.read_csv(out_dir / "reproduce_table.csv").set_index("method")
    assert table.loc["metadistil", "dev_accuracy_delta"] == pytest.approx(delta, abs=1e-12)
    assert cells[2][-1].startswith(f"{100 * delta:+.2f} (")
    assert pd.isna(table.loc["kd", "dev_accuracy_delta"])

    # equal budgets: one shared base spec, only the method differs
    specs = {m: s for (_, m), s in ((k, v) for k, v in result["summaries"].items())}
    assert specs["kd"]["search"]["num_samples"] == specs["metadistil"]["search"]["num_samples"] == 1
    assert specs["kd"]["search"]["scheduler"] == specs["metadistil"]["search"]["scheduler"]

    # one MLflow run holds the outputs; every sweep's runs carry the reproduce tag
    client = MlflowClient(mlflow_uri)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags[tracking.TAG_ROLE] == "reproduce"
    assert files == {a.path for a in client.list_artifacts(result["run_id"])}
    exp = client.get_experiment_by_name("test-repro")
    tagged = client.search_runs([exp.experiment_id], filter_string="tags.`distill.reproduce` = 'repro'",
                                max_results=100)
    roles = [r.data.tags.get(tracking.TAG_ROLE) for r in tagged]
    assert roles.count("sweep") == 2 and roles.count("reproduce") == 1 and roles.count("trial") == 6  # per method: 1 search trial + 2 seed re-runs


def test_unknown_method_or_task_exits_2(capsys):
    for argv, bad in ((["--methods", "kd,bogus"], "'bogus'"), (["--tasks", "sst2,nope"], "'nope'")):
        with pytest.raises(SystemExit) as info:
            reproduce.main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and bad in err[0] and "valid:" in err[0]
