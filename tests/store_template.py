"""New, empty SQLite MLflow stores for tests that read or fill a store but do not test creating
one: a copy of one empty store made once per test session (creating a store's tables runs
MLflow's database migrations, seconds each time)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_TEMPLATE: list[str] = []


def _template() -> str:
    if not _TEMPLATE:
        from mlflow import MlflowClient

        folder = tempfile.mkdtemp(prefix="mlflow-template-")
        atexit.register(shutil.rmtree, folder, True)  # the session's template goes with the session
        path = os.path.join(folder, "mlflow.db")
        MlflowClient(f"sqlite:///{path}").search_experiments()  # creates the tables (migrations)
        _TEMPLATE.append(path)
    return _TEMPLATE[0]


def empty_store(path) -> str:
    """The URI of a new SQLite MLflow store at ``path`` (a copy of the session's empty store);
    an existing file is used as it is."""
    path = os.path.abspath(str(path))
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(_template(), path)
    return f"sqlite:///{path}"
