"""System metrics of a trial's machine (``--system-metrics``), sampled with MLflow's own monitors.

MLflow's ``SystemMetricsMonitor`` (``log_system_metrics=True``) samples CPU, memory, disk, network
and (with ``nvidia-ml-py``) GPU use on a thread and writes them to the tracking store itself,
checking the run's status there at every sample. A sweep's trials never talk to the store (the
driver logs everything: SQLite works with trials on other nodes, and one process writes to it),
so the trial process runs the same monitors (``mlflow.system_metrics.metrics``) on a thread of its
own, :class:`SystemSampler`, every ``interval`` seconds, and each evaluation's report carries their
averages since the previous evaluation under MLflow's names (``system/cpu_utilization_percentage``,
``system/system_memory_usage_megabytes``, ``system/disk_usage_percentage``,
``system/network_receive_megabytes``, ``system/gpu_0_utilization_percentage``, ...); the driver logs
them in the trial's run at the evaluation's step. They describe the node the trial runs on (the
whole machine, as MLflow's do), sampled while that trial trains.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from trainables.errors import UserError

#: MLflow's prefix of system metrics
PREFIX = "system/"


def check_available() -> None:
    """MLflow's monitors need ``psutil``: a clear error before any trial starts."""
    try:
        import psutil  # noqa: F401
    except ImportError:
        raise UserError("--system-metrics needs the package psutil (pip install psutil)") from None


def _monitors() -> list:
    from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
    from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
    from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

    monitors = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
    try:  # NVIDIA GPUs, where nvidia-ml-py is installed (as MLflow's own sampler)
        from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

        monitors.append(GPUMonitor())
    except Exception:
        pass
    return monitors


class SystemSampler:
    """MLflow's monitors sampled every ``interval`` seconds on a daemon thread; :meth:`take`
    returns the averages since the last call (``system/<name>``); :meth:`stop` joins the thread."""

    def __init__(self, interval: float):
        if interval <= 0:
            raise UserError(f"the system metrics' sampling interval must be > 0 seconds, got {interval}")
        self.interval = float(interval)
        self.monitors = _monitors()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="distill-system-metrics", daemon=True)

    def start(self) -> "SystemSampler":
        self._sample()  # a first sample at once: a short trial has one too
        self._thread.start()
        return self

    def _sample(self) -> None:
        with self._lock:
            for monitor in self.monitors:
                try:
                    monitor.collect_metrics()
                except Exception:  # a sensor that fails must not fail the trial
                    pass

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def take(self) -> dict[str, float]:
        """The averages of the samples since the last call (a fresh sample when there is none)."""
        if not any(m.metrics for m in self.monitors):
            self._sample()
        out: dict[str, float] = {}
        with self._lock:
            for monitor in self.monitors:
                if monitor.metrics:
                    out.update({PREFIX + k: float(v) for k, v in monitor.aggregate_metrics().items()})
                monitor.clear_metrics()
        return out

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(5.0, 2 * self.interval))


@contextlib.contextmanager
def sampling(interval: float) -> Iterator[Callable[[], dict]]:
    """Around a trial's training: yields what each evaluation adds to its report, the system
    metrics since the last one (nothing when ``interval`` is 0); the sampling thread is joined
    when the trial ends."""
    if not interval:
        yield dict
        return
    sampler = SystemSampler(interval).start()
    try:
        yield sampler.take
    finally:
        sampler.stop()
