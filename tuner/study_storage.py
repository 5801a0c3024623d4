"""Persistent Optuna studies: ``--study-storage URI`` keeps a sweep's Optuna study in a database,
so a later sweep with the same study name (``--study-name``, default ``<method>-<task>``) continues
the search (TPE sees every earlier trial) instead of starting cold.

Any SQLAlchemy URL Optuna's ``RDBStorage`` takes: ``sqlite:///path/optuna.db`` (a relative path is
made absolute) or ``postgresql://user:pass@host/db`` on a cluster. Not the MLflow SQLite file: both
libraries version their tables in one ``alembic_version`` table, so one file cannot hold both (a
clear error says so). ``optuna-dashboard URI`` shows the study.
"""

from __future__ import annotations

import os

from trainables.errors import UserError


def resolve(uri: str, workdir: str | None = None) -> str:
    """``uri`` with a relative SQLite path made absolute; a bare ``*.db`` path becomes sqlite."""
    workdir = os.path.abspath(workdir or os.getcwd())
    if uri.startswith("sqlite:///"):
        return "sqlite:///" + os.path.abspath(os.path.join(workdir, uri[len("sqlite:///"):]))
    if "://" not in uri:
        if not uri.endswith(".db"):
            raise UserError(f"--study-storage {uri!r}: expected a database URL (sqlite:///path/optuna.db, "
                            "postgresql://...) or a path ending in .db")
        return "sqlite:///" + os.path.abspath(os.path.join(workdir, uri))
    return uri


def check(uri: str, mlflow_uri: str) -> str:
    """The resolved URI, refused where it is the MLflow store itself."""
    uri = resolve(uri)
    if uri == mlflow_uri:
        raise UserError(f"--study-storage {uri} is the MLflow store: Optuna and MLflow both keep an "
                        "alembic_version table, so they cannot share one database; use another file, "
                        f"e.g. sqlite:///{os.path.join(os.path.dirname(uri[len('sqlite:///'):]), 'optuna.db')}")
    return uri


def open_storage(uri: str):
    """Optuna's RDB storage at ``uri`` (tables created on first use), or a UserError naming it."""
    import optuna

    kwargs = {"connect_args": {"timeout": 60}} if uri.startswith("sqlite:") else {}
    try:
        if uri.startswith("sqlite:///"):
            os.makedirs(os.path.dirname(uri[len("sqlite:///"):]) or ".", exist_ok=True)
        return optuna.storages.RDBStorage(uri, engine_kwargs=kwargs)
    except Exception as err:  # a bad URL, a server that does not answer, a missing driver
        raise UserError(f"--study-storage {uri}: cannot open it ({type(err).__name__}: {err})") from None


def default_name(method: str, task: str) -> str:
    return f"{method}-{os.path.basename(os.path.normpath(task))}"


def finished_trials(storage, name: str) -> int:
    """Completed trials of study ``name`` in ``storage`` (0 when there is no such study yet)."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return 0
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
