"""Cluster mode for real: a two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``,
one CPU per node), a sweep driven by ``python -m tuner.launch --address <head>`` in its own
process; its trials run on both nodes and all of their runs land in one MLflow store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from ray_fixtures import tiny_cli_args
from tuner import tracking

pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def two_node_cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def test_trials_of_one_sweep_spread_over_the_nodes(two_node_cluster, tiny_config, mlflow_uri, tmp_path):
    out = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "tuner.launch", "--method", "kd", *tiny_cli_args(tiny_config),
           "--num-samples", "4", "--max-concurrent", "2", "--cpus-per-trial", "1", "--scheduler", "fifo",
           "--evals-per-epoch", "2", "--address", two_node_cluster.address, "--mlflow-uri", mlflow_uri,
           "--experiment", "test-cluster", "--storage-path", str(tmp_path / "shared-storage"),
           "--name", "spread", "--output-json", str(out), "--quiet"]
    done = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["counts"]["TERMINATED"] == 4
    nodes = {t["node_id"] for t in summary["trials"]}
    assert len(nodes) == 2 and nodes == {n.node_id for n in two_node_cluster.list_all_nodes()}

    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("test-cluster")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`distill.sweep` = 'spread'")
    trials = [r for r in runs if r.data.tags[tracking.TAG_ROLE] == tracking.ROLE_TRIAL]
    assert len(trials) == 4
    assert {r.data.tags[tracking.TAG_NODE] for r in trials} == nodes
    parent = [r for r in runs if r.data.tags[tracking.TAG_ROLE] == tracking.ROLE_SWEEP][0]
    assert all(r.data.tags[tracking.TAG_PARENT] == parent.info.run_id for r in trials)



def test_without_address_a_sweep_starts_its_own_ray_and_never_joins_a_running_one(tmp_path):
    """Another Ray instance runs on the machine and RAY_ADDRESS points at it (as after `ray start
    --head`): a driver without --address still gets a private local instance."""
    from ray.cluster_utils import Cluster

    other = Cluster(initialize_head=True, connect=False,
                    head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        code = ("from tuner import cluster\n"
                "with cluster.connect(None) as conn:\n"
                "    print(conn['address'], conn['started'])\n")
        done = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                              timeout=180, env={**os.environ, "PYTHONPATH": REPO, "RAY_ADDRESS": other.address})
        assert done.returncode == 0, done.stderr[-3000:]
        address, started = done.stdout.split()[-2:]
        assert started == "True" and address != other.address
        assert len(other.list_all_nodes()) == 1
    finally:
        other.shutdown()
