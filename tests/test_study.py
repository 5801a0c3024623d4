"""tuner.study: running a sensitivity study. Each method's grid sweep gets that method's own grid, and
``python -m analysis.sensitivity`` is the same command as ``python -m tuner.study``."""

from __future__ import annotations

import contextlib
import subprocess
import sys

from conftest import REPO_ROOT
from tuner import study


def test_each_method_sweeps_its_own_grid(monkeypatch, tmp_path):
    """Student depths are clipped to the depth of each method's own teacher; every method's sweep
    runs its own grid, not the last method's (and every method's configuration is checked)."""
    import tuner.cluster
    import tuner.sweep

    specs = []
    monkeypatch.setattr(tuner.cluster, "connect", lambda *a, **kw: contextlib.nullcontext({}))
    monkeypatch.setattr(tuner.sweep, "run_sweep", specs.append)
    depth = {"kd": 2, "metadistil": 6}
    monkeypatch.setattr(study, "teacher_depth", lambda cfg: depth[cfg.method])
    args = study.build_parser().parse_args([
        "--study", "student-size", "--mlflow-uri", f"sqlite:///{tmp_path}/nothing-yet.db",
        "--storage-path", str(tmp_path / "ray"), "--system-metrics", "0.5"])

    names, task, grids = study.run_study(args, study.get_study("student-size"), ["kd", "metadistil"], None)

    assert grids == {"kd": [1, 2], "metadistil": [1, 2, 3, 4, 6]}
    assert [s.method for s in specs] == ["kd", "metadistil"] and len(names) == 2 and task == "sst2"
    assert {s.method: s.grid["student_layers"] for s in specs} == grids
    assert all(s.grid["seed"] == [42] for s in specs)
    assert all(s.system_metrics == 0.5 for s in specs)  # passed on to every method's sweep


def test_analysis_sensitivity_is_the_same_command():
    from analysis import sensitivity

    def options(parser):
        return sorted(o for action in parser._actions for o in action.option_strings)

    assert options(sensitivity.build_parser()) == options(study.build_parser())
    assert sensitivity.build_parser().prog == "python -m analysis.sensitivity"
    out = subprocess.run([sys.executable, "-m", "analysis.sensitivity", "--help"], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("usage: python -m analysis.sensitivity") and "--from-mlflow" in out
