"""The trial process waits at exit for its training thread (``trainables.runner_exit``): a daemon
thread still inside torch when the interpreter shuts down aborts the process (SIGABRT,
"terminate called without an active exception"), which is what a trial's actor did when Ray
terminated it while a stopped trial's thread was still unwinding."""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import sys, threading, time
import torch
from trainables.runner_exit import finish_before_exit

torch.set_num_threads(1)
started = threading.Event()

def training():  # like a stopped trial's thread: still computing when the main thread returns
    finish_before_exit()
    started.set()
    x = torch.randn(200, 200)
    end = time.time() + 1.0
    while time.time() < end:
        x = torch.tanh(x @ x.T / 200)
    open(sys.argv[1], "w").write("unwound")

threading.Thread(target=training, daemon=True).start()
started.wait()
"""


def test_the_process_exits_only_after_its_training_thread_and_without_aborting(tmp_path):
    marker = tmp_path / "marker"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(marker)], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])  # -6 (SIGABRT) without the wait
    assert "terminate called" not in done.stderr
    assert marker.read_text() == "unwound"
