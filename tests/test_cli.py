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


def test_a_command_runs_its_module_and_an_unknown_one_is_exit_2(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["paper-table", "--help"])
    assert done.value.code == 0 and "python -m analysis.paper_table" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        cli.main(["lanch"])
    assert bad.value.code == 2
    err = capsys.readouterr().err
    assert "unknown command 'lanch'" in err and "launch" in err
