"""Which Ray a sweep uses: without ``--address`` a private local instance, never another one
running on the machine. (A sweep over a two-node cluster, its trials on both nodes and all of their
runs in one MLflow store, is tests/test_gpu_pool.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
