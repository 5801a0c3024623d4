"""A trial process never exits while its training thread is still running.

Ray Tune runs a function trainable in a daemon thread of the trial's actor (its "runner thread").
When a trial is stopped (ASHA, the end of the sweep) Ray sets a stop flag and returns at once
(``session.finish(timeout=0)``); the thread leaves ``tune.report`` with ``SystemExit`` and unwinds
the training: the checkpoint's temporary folder is deleted, the models and the optimiser state are
freed, the system-metrics thread is joined. If the actor's process exits meanwhile (Ray
terminates the actor at the end of the sweep, or when it is not reused), the interpreter shuts
down with that daemon thread inside torch: a thread that wants the GIL back after shutdown started
is ended by the interpreter (``pthread_exit``), whose forced unwinding through torch's C++ frames
aborts the process (SIGABRT, a native stack dump in the console after the sweep's final table,
although every trial finished). :func:`finish_before_exit`, called by the trainable in its runner
thread, registers an ``atexit`` handler (Ray runs an actor's ``atexit`` handlers when it exits) that
waits for the process's training threads, at most :data:`JOIN_TIMEOUT_S` seconds each, before the
interpreter shuts down.
"""

from __future__ import annotations

import atexit
import threading
import weakref

#: the longest the process waits at exit for one training thread to finish unwinding
JOIN_TIMEOUT_S = 30.0

_threads: list[weakref.ref] = []
_lock = threading.Lock()


def finish_before_exit() -> None:
    """Make the process wait at exit for the calling thread (a no-op in the main thread)."""
    thread = threading.current_thread()
    if thread is threading.main_thread():
        return
    with _lock:
        if not _threads:
            atexit.register(join_training_threads)
        _threads[:] = [r for r in _threads if r() is not None and r().is_alive()]
        _threads.append(weakref.ref(thread))


def join_training_threads(timeout: float = JOIN_TIMEOUT_S) -> None:
    """Wait for every registered thread that is still running (the ``atexit`` handler)."""
    with _lock:
        threads = [r() for r in _threads]
    for thread in threads:
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)
