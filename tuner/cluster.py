"""Connecting to Ray (a local instance or an existing cluster) and checking what it offers.

* ``--address`` unset: a private local Ray instance with this machine's CPUs/GPUs (no
  dashboard), started by this process even when another Ray instance runs on the machine or
  ``RAY_ADDRESS`` is set (``ray.init(address="local")``): a sweep never joins a cluster by accident.
  It listens on the loopback interface only (:func:`loopback_only`): nothing on the network
  reaches its GCS, raylet or workers (``--address 127.0.0.1:PORT`` joins such an instance).
* ``--address auto`` / ``HOST:PORT`` / ``ray://HOST:PORT``: an existing cluster (``ray start
  --head`` ...); a HOST:PORT that does not answer is a one-line error, not a long hang.
* A process already connected to Ray (tests, notebooks) keeps its connection.

:func:`check_trial_resources` rejects a per-trial request no single node can satisfy (Tune would
otherwise wait forever), :func:`packing` says how many trials the nodes hold at once (fractions of a
GPU share it: ``--gpus-per-trial 0.25`` packs four trials per GPU, as far as the node's CPUs and
``--max-concurrent`` allow), and :func:`run_remote` runs a function as a Ray task (the teacher stage).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from collections.abc import Iterator
from typing import Any

from trainables.errors import UserError


def _host_port(address: str) -> tuple[str, int] | None:
    addr = address.split("://", 1)[-1]
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host or "127.0.0.1", int(port)


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """A cluster address must answer before Ray tries (and retries) to join it."""
    if not address or address == "auto" or address == "local":
        return
    hp = _host_port(address)
    if hp is None:
        raise UserError(f"--address {address!r} is not HOST:PORT, ray://HOST:PORT or 'auto'")
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as err:
        raise UserError(f"no Ray cluster answers at --address {address} ({err.strerror or err}); start one "
                        f"with `ray start --head` or leave --address out for a local instance") from None


LOOPBACK = "127.0.0.1"


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Around ``ray.init(address="local", _node_ip_address=LOOPBACK)``: the instance it starts
    binds its gRPC servers (GCS, raylet, object manager, every worker) and agents to 127.0.0.1.

    Ray 2.60 binds them to 127.0.0.1 only when the node's IP is exactly ``127.0.0.1``
    (``GrpcServer::Run``: ``listen_to_localhost_only_ ? "127.0.0.1:" : "0.0.0.0:"``), else on every
    interface; but ``ray.init`` turns a loopback ``_node_ip_address`` into the machine's IP
    (``services.resolve_ip_for_localhost``) unless Ray clusters are switched off
    (``ray_constants.ENABLE_RAY_CLUSTER``, the ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` variable read
    when Ray is imported). The flag is off while this process starts the instance, then as it
    was; nothing else reads it then. Where a Ray version lacks it, the instance starts as Ray
    decides."""
    try:
        from ray._private import ray_constants
    except ImportError:  # pragma: no cover - another Ray layout
        yield
        return
    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if saved is None:  # pragma: no cover
        yield
        return
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


@contextlib.contextmanager
def connect(address: str | None = None, *, num_cpus: int | None = None,
            num_gpus: int | None = None) -> Iterator[dict[str, Any]]:
    """Connect to Ray for the duration of the block; shut down only what this call started.
    Yields ``{"address": ..., "started": bool}``."""
    import ray

    check_address(address)
    if ray.is_initialized():
        yield {"address": ray.get_runtime_context().gcs_address, "started": False}
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                              "configure_logging": True, "logging_level": "WARNING"}
    if address and address != "local":
        kwargs["address"] = address
    else:  # "local": always a new instance, never one found through RAY_ADDRESS or /tmp/ray
        kwargs.update(address="local", num_cpus=num_cpus, num_gpus=num_gpus, _node_ip_address=LOOPBACK)
    # joining a loopback address: Ray would turn it into the machine's IP, where a loopback-only
    # instance (another local sweep's, the tests') does not listen
    hp = _host_port(kwargs["address"])
    on_loopback = kwargs["address"] == "local" or (hp is not None and hp[0] in (LOOPBACK, "localhost"))
    try:
        with loopback_only() if on_loopback else contextlib.nullcontext():
            ray.init(**kwargs)
    except ConnectionError as err:
        raise UserError(f"cannot connect to the Ray cluster at --address {address}: {err}") from None
    try:
        yield {"address": ray.get_runtime_context().gcs_address, "started": True}
    finally:
        ray.shutdown()


def node_resources() -> list[dict[str, float]]:
    """Total resources of each alive node."""
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def check_trial_resources(cpus: float, gpus: float) -> dict[str, float]:
    """A trial's CPUs/GPUs must fit on one node of the cluster. Returns the cluster totals."""
    if cpus <= 0:
        raise UserError(f"--cpus-per-trial must be > 0, got {cpus}")
    if gpus < 0:
        raise UserError(f"--gpus-per-trial must be >= 0, got {gpus}")
    nodes = node_resources()
    most_cpus = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    most_gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    total = {"CPU": sum(n.get("CPU", 0.0) for n in nodes), "GPU": sum(n.get("GPU", 0.0) for n in nodes),
             "nodes": len(nodes), "max_node_CPU": most_cpus, "max_node_GPU": most_gpus}
    if gpus > most_gpus:
        where = "the cluster has no GPU" if most_gpus == 0 else f"its largest node has {most_gpus:g}"
        raise UserError(f"--gpus-per-trial {gpus:g} is more than any node offers ({where}); "
                        f"use --gpus-per-trial 0 or a fraction up to {most_gpus:g}")
    if cpus > most_cpus:
        raise UserError(f"--cpus-per-trial {cpus:g} is more than any node offers (the largest has "
                        f"{most_cpus:g} CPUs)")
    return total


def _fits(node: dict[str, float], cpus: float, gpus: float) -> int:
    """Trials of ``cpus`` CPUs and ``gpus`` GPUs one node holds at once (Ray packs fractions of a
    GPU: 0.25 -> four trials per GPU)."""
    counts = [math.floor(node.get("CPU", 0.0) / cpus + 1e-9)]
    if gpus > 0:
        counts.append(math.floor(node.get("GPU", 0.0) / gpus + 1e-9))
    return max(0, min(counts))


def packing(cpus: float, gpus: float, max_concurrent: int) -> dict[str, Any]:
    """How the cluster's nodes hold the sweep's trials: ``per_node`` (trials each node fits),
    ``fit`` (their sum), ``at_once`` (``fit`` capped by ``max_concurrent``) and
    ``trials_per_gpu`` (``1 / gpus`` for a fraction of a GPU; None without GPUs)."""
    per_node = [_fits(n, cpus, gpus) for n in node_resources()]
    per_gpu = math.floor(1 / gpus + 1e-9) if 0 < gpus <= 1 else None
    return {"per_node": per_node, "fit": sum(per_node), "at_once": min(sum(per_node), max_concurrent),
            "trials_per_gpu": per_gpu, "cpus_per_trial": cpus, "gpus_per_trial": gpus,
            "max_concurrent": max_concurrent}


def packing_lines(p: dict[str, Any]) -> list[str]:
    """The packing for the console, with a hint when ``--max-concurrent`` leaves room unused."""
    gpu = f", {p['trials_per_gpu']} per GPU" if p["trials_per_gpu"] else ""
    lines = [f"resources: {p['at_once']} trial(s) at once ({len(p['per_node'])} node(s) fit "
             f"{'+'.join(map(str, p['per_node']))} at --cpus-per-trial {p['cpus_per_trial']:g} "
             f"--gpus-per-trial {p['gpus_per_trial']:g}{gpu}; --max-concurrent {p['max_concurrent']})"]
    if p["gpus_per_trial"] > 0 and p["max_concurrent"] < p["fit"]:
        lines.append(f"hint: --max-concurrent {p['fit']} would fill every GPU share")
    return lines


def run_remote(fn, calls: list[tuple], *, num_cpus: float = 1, num_gpus: float = 0) -> list:
    """Run ``fn(*args)`` for each ``args`` of ``calls`` as Ray tasks (in parallel) and return
    their values; a UserError raised in a task is raised here as itself."""
    import ray
    from ray.exceptions import RayTaskError

    task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)(fn)
    try:
        return ray.get([task.remote(*args) for args in calls])
    except RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, UserError):
            raise UserError(str(cause)) from None
        raise
