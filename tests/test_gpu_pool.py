"""The multi-node GPU pool, tested on CPU (issue 10, item 5): a two-node ``ray.cluster_utils.Cluster``
whose nodes declare one logical GPU each runs a real sweep with ``--gpus-per-trial 0.5``; two trials
share each node's GPU at once, each is given that GPU's id, both nodes are used, and every trial
trains on the CPU because torch has no CUDA here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from ray_fixtures import tiny_cli_args
from tuner import cluster, tracking

pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def two_gpu_nodes(monkeypatch):
    """Two nodes of 2 CPUs and 1 logical GPU each; the test process does not connect to it (it
    may hold the session's Ray instance), a driver process joins it with --address. Its workers
    import the project from this checkout."""
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))

    pool = Cluster(initialize_head=True, connect=False,
                   head_node_args={"num_cpus": 2, "num_gpus": 1, "include_dashboard": False})
    try:
        pool.add_node(num_cpus=2, num_gpus=1)
        pool.wait_for_nodes()
        yield pool
    finally:
        pool.shutdown()


def trial_span(path: str) -> tuple[float, float]:
    """When a trial ran, from Ray's own result log: (start, last report), in seconds."""
    with open(os.path.join(path, "result.json")) as fh:
        results = [json.loads(line) for line in fh if line.strip()]
    first, last = results[0], results[-1]
    return first["timestamp"] - first["time_total_s"], last["timestamp"]


def test_half_a_gpu_per_trial_runs_two_trials_per_node_on_both_nodes(two_gpu_nodes, tiny_config, mlflow_uri,
                                                                     tmp_path):
    out = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "tuner.launch", "--method", "kd", *tiny_cli_args(tiny_config),
           "--num-samples", "4", "--max-concurrent", "4", "--cpus-per-trial", "1", "--gpus-per-trial", "0.5",
           "--scheduler", "fifo", "--evals-per-epoch", "1", "--address", two_gpu_nodes.address,
           "--mlflow-uri", mlflow_uri, "--experiment", "test-gpu-pool",
           "--storage-path", str(tmp_path / "shared-storage"), "--name", "gpu-pool", "--output-json", str(out)]
    done = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode == 0, done.stderr[-3000:]
    # the driver states the packing: 2 trials per node, 2 per GPU
    assert "resources: 4 trial(s) at once (2 node(s) fit 2+2" in done.stdout and "2 per GPU" in done.stdout
    summary = json.loads(out.read_text())
    assert summary["counts"]["TERMINATED"] == 4
    assert summary["packing"]["per_node"] == [2, 2] and summary["packing"]["trials_per_gpu"] == 2

    by_node: dict[str, list[dict]] = {}
    for trial in summary["trials"]:
        by_node.setdefault(trial["node_id"], []).append(trial)
    assert set(by_node) == {n.node_id for n in two_gpu_nodes.list_all_nodes()}  # both nodes used
    for trials in by_node.values():
        assert len(trials) == 2
        assert [t["gpu_ids"] for t in trials] == ["0", "0"]  # the node's one GPU, given to both
        spans = [trial_span(t["path"]) for t in trials]
        assert max(s for s, _ in spans) < min(e for _, e in spans), spans  # at the same time
    # a logical GPU without CUDA: the trials said so and trained on the CPU
    assert all(t["metrics"].get("peak_mem_mb") for t in summary["trials"])
    assert "CUDA is not available to torch here; training on the CPU" in done.stderr + done.stdout

    # the trials of one sweep spread over the nodes, tracked by the one driver: a run per trial,
    # tagged with its node, under the sweep's parent run
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("test-gpu-pool")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`distill.sweep` = 'gpu-pool'")
    trials = [r for r in runs if r.data.tags[tracking.TAG_ROLE] == tracking.ROLE_TRIAL]
    assert len(trials) == 4
    assert {r.data.tags[tracking.TAG_NODE] for r in trials} == set(by_node)
    parent = [r for r in runs if r.data.tags[tracking.TAG_ROLE] == tracking.ROLE_SWEEP][0]
    assert all(r.data.tags[tracking.TAG_PARENT] == parent.info.run_id for r in trials)


def test_packing_counts_fractions_of_a_gpu_per_node(monkeypatch):
    nodes = [{"CPU": 16.0, "GPU": 1.0}, {"CPU": 2.0, "GPU": 1.0}, {"CPU": 8.0}]
    monkeypatch.setattr(cluster, "node_resources", lambda: nodes)
    p = cluster.packing(1.0, 0.25, 4)
    assert p["per_node"] == [4, 2, 0] and p["fit"] == 6 and p["at_once"] == 4 and p["trials_per_gpu"] == 4
    assert cluster.packing_lines(p)[-1] == "hint: --max-concurrent 6 would fill every GPU share"
    assert cluster.packing(2.0, 0.0, 8)["per_node"] == [8, 1, 4]
    assert cluster.packing(1.0, 0.3, 8)["per_node"] == [3, 2, 0]


def test_bench_sweep_runs_one_sweep_per_packing_and_reports_trials_per_hour():
    from tuner import bench_sweep
    from tuner.spec import SweepSpec

    specs = []

    def fake_run(spec):
        specs.append(spec)
        n = len(spec.grid["seed"])
        seconds = 100.0 * n / spec.max_concurrent   # each trial takes 100 s, packed ones side by side
        trials = [{"status": "TERMINATED", "metrics": {"train_seconds": 90.0, "step_ms": 50.0}}] * n
        return {"time": {"trials_seconds": seconds, "training_fraction": 0.8}, "trials": trials}

    base = SweepSpec(method="kd", config={"seed": 42}, name="b")
    rows = bench_sweep.bench(base, [1, 2, 4], gpus=2, run=fake_run)
    assert [(s.gpus_per_trial, s.max_concurrent, len(s.grid["seed"])) for s in specs] == [
        (1.0, 2, 4), (0.5, 4, 8), (0.25, 8, 16)]
    assert all(s.scheduler == "fifo" and s.grid["seed"][0] == 43 for s in specs)
    assert [r["trials_per_hour"] for r in rows] == [72.0, 144.0, 288.0]
    table = bench_sweep.format_table(rows)
    assert "| 4 | 8 | 16 | 200.0 | 288.0 | 4.00 | 90.0 | 50.0 | 80% |" in table


@pytest.mark.parametrize("argv, message", [
    (["--trials-per-gpu", "1,0"], "--trials-per-gpu '1,0': expected positive whole numbers"),
    (["--trials-per-gpu", "a"], "--trials-per-gpu 'a': expected positive whole numbers"),
    (["--gpus", "0"], "--gpus 0: a whole number >= 1"),
])
def test_bench_sweep_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    from tuner import bench_sweep

    with pytest.raises(SystemExit) as info:
        bench_sweep.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
