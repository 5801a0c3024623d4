"""The ``distill-tune`` console script: one command per entry point, modules imported lazily."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import pytest

from tuner import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_console_script_is_declared_and_every_command_has_a_main():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as fh:
        scripts = tomllib.load(fh)["project"]["scripts"]
    assert scripts == {"distill-tune": "tuner.cli:entry"}
    for name, (module, _) in cli.COMMANDS.items():
        assert callable(importlib.import_module(module).main), name


def test_help_lists_the_commands_without_loading_torch_ray_or_mlflow():
    code = ("import sys; from tuner import cli; cli.main(['--help']); "
            "print(sorted(m for m in ('torch', 'ray', 'mlflow', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip().endswith("[]")
    for name, (module, _) in cli.COMMANDS.items():
        assert f"  {name} " in out and f"(python -m {module})" in out


#: what no --help may load (each takes 0.5-1.5 s to import; datasets reads the task files, matplotlib draws)
HEAVY = ("torch", "transformers", "ray", "mlflow", "datasets", "optuna", "matplotlib")
#: every entry point: the console script's commands, the study's alias and the options table
ENTRY_POINTS = sorted({module for module, _ in cli.COMMANDS.values()} | {"analysis.sensitivity", "trainables.options"})


def test_every_entry_points_help_loads_no_torch_ray_mlflow_or_transformers():
    """``python -m <entry point> --help`` for each one, in one fresh process: after each, none of
    :data:`HEAVY` is in ``sys.modules`` (the option and registry declarations import lazily)."""
    code = ("import runpy, sys\n"
            f"heavy = {HEAVY!r}\n"
            "for module in sys.argv[1:]:\n"
            "    sys.argv = [module, '--help']\n"
            "    try:\n"
            "        runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
            "    except SystemExit as done:\n"
            "        assert done.code in (0, None), (module, done.code)\n"
            "    print('LOADED', module, sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code, *ENTRY_POINTS], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = [line.split(" ", 2)[1:] for line in done.stderr.splitlines() if line.startswith("LOADED ")]
    assert [module for module, _ in loaded] == ENTRY_POINTS
    assert [(module, modules) for module, modules in loaded if modules != "[]"] == []
    assert "usage:" in done.stdout and "--num-samples" in done.stdout and "--set KEY=VALUE" in done.stdout


def test_a_command_runs_its_module_and_an_unknown_one_is_exit_2(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["paper-table", "--help"])
    assert done.value.code == 0 and "python -m analysis.paper_table" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        cli.main(["lanch"])
    assert bad.value.code == 2
    err = capsys.readouterr().err
    assert "unknown command 'lanch'" in err and "launch" in err
