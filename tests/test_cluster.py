"""Which Ray a sweep uses: without ``--address`` a private local instance, never another one
running on the machine. (A sweep over a two-node cluster, its trials on both nodes and all of their
runs in one MLflow store, is tests/test_gpu_pool.py.)"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

import pytest


pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


#: run in a driver process: a private local instance with one worker, then every listening socket
#: of the driver and the Ray processes under it (GCS, raylet, agents, workers)
LISTENERS = """
import json
from tuner import cluster
with cluster.connect(None) as conn:
    import psutil, ray  # Ray's own copy of psutil
    ray.get(ray.remote(num_cpus=0)(lambda: 0).remote())  # a worker, with its gRPC server
    listening = []
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            listening += [[proc.name(), c.laddr.ip, c.laddr.port] for c in proc.net_connections("inet")
                          if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            pass
    print(json.dumps({"address": conn["address"], "started": conn["started"], "listening": listening}))
"""


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return address.is_loopback or bool(getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback)


def test_without_address_a_sweep_starts_its_own_ray_and_never_joins_a_running_one(tmp_path):
    """Another Ray instance runs on the machine and RAY_ADDRESS points at it (as after `ray start
    --head`): a driver without --address still gets a private local instance, and that instance
    listens on the loopback interface only (GCS, raylet, agents, workers, the driver)."""
    from ray.cluster_utils import Cluster

    other = Cluster(initialize_head=True, connect=False,
                    head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        done = subprocess.run([sys.executable, "-c", LISTENERS], cwd=str(tmp_path), capture_output=True, text=True,
                              timeout=180, env={**os.environ, "PYTHONPATH": REPO, "RAY_ADDRESS": other.address})
        assert done.returncode == 0, done.stderr[-3000:]
        local = json.loads(done.stdout.strip().splitlines()[-1])
        assert local["started"] is True and local["address"] != other.address
        assert len(other.list_all_nodes()) == 1
        names = {name for name, _, _ in local["listening"]}
        assert {"gcs_server", "raylet"} <= names and len(names) >= 4, local["listening"]
        assert [s for s in local["listening"] if not _loopback(s[1])] == []
        assert local["address"].startswith("127.0.0.1:")
    finally:
        other.shutdown()
