"""A sweep's record and resuming it: ``distill_sweep.json`` (the spec, the MLflow parent run, the
tracking URI, the teachers, ...) next to Ray's experiment state in ``<storage>/<name>/``;
:func:`resume_spec` turns ``--resume --name N`` back into the recorded :class:`SweepSpec`, and
:func:`resume_command` is the command that continues a sweep.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

from trainables.errors import UserError

from tuner.spec import SweepSpec

RECORD_FILE = "distill_sweep.json"


def record_path(spec: SweepSpec) -> str:
    return os.path.join(spec.experiment_dir, RECORD_FILE)


def write_record(spec: SweepSpec, **extra: Any) -> None:
    """Write (atomically) the record of ``spec``: the spec and ``extra``."""
    os.makedirs(spec.experiment_dir, exist_ok=True)
    path = record_path(spec)
    record = {"spec": spec.to_dict(), **extra}
    with open(path + ".tmp", "w") as fh:
        json.dump(record, fh, indent=2, default=str)
    os.replace(path + ".tmp", path)


def read_record(experiment_dir: str) -> dict[str, Any]:
    """The sweep's record; a UserError when it is unreadable, truncated or not a sweep record."""
    path = os.path.join(experiment_dir, RECORD_FILE)
    try:
        with open(path) as fh:
            record = json.load(fh)
        if not isinstance(record, dict) or not isinstance(record.get("spec"), dict):
            raise ValueError("no 'spec' mapping")
    except (OSError, ValueError) as err:
        raise UserError(f"cannot resume from {path}: the sweep record is corrupt or truncated ({err}); "
                        f"start the sweep again under another --name") from None
    return record


def sweeps_in(storage_path: str) -> list[str]:
    if not os.path.isdir(storage_path):
        return []
    return sorted(d for d in os.listdir(storage_path)
                  if os.path.isfile(os.path.join(storage_path, d, RECORD_FILE)))


def resume_spec(spec: SweepSpec) -> tuple[SweepSpec, dict[str, Any]]:
    """The recorded spec of the sweep ``spec.name`` names, and its record; where it runs (address,
    verbosity, tracking URI, summary file) comes from ``spec``."""
    storage = os.path.abspath(os.path.expanduser(spec.storage_path or "ray_results"))
    known = sweeps_in(storage)
    if not spec.name:
        raise UserError(f"--resume needs --name of the sweep to continue; sweeps in {storage}: "
                        f"{', '.join(known) or 'none'}")
    directory = os.path.join(storage, spec.name)
    if not os.path.isfile(os.path.join(directory, RECORD_FILE)):
        raise UserError(f"no sweep {spec.name!r} to resume in {storage}; sweeps there: {', '.join(known) or 'none'}")
    record = read_record(directory)
    try:
        saved = SweepSpec.from_dict(record["spec"])
    except TypeError as err:  # a required setting missing
        raise UserError(f"cannot resume from {os.path.join(directory, RECORD_FILE)}: the sweep record is "
                        f"corrupt ({err})") from None
    # where it runs and where the summary goes may change; what it searches may not
    saved.address = spec.address
    saved.verbose = spec.verbose
    # the store may have moved with the sweep: the record's URI unless --mlflow-uri is given
    saved.mlflow_uri = spec.mlflow_uri or record.get("tracking_uri") or saved.mlflow_uri
    if spec.output_json:
        saved.output_json = os.path.abspath(spec.output_json)
    saved.storage_path = storage
    return saved, record


def resume_command(spec: SweepSpec) -> str:
    """The command that continues this sweep (printed instead of Ray's ``Tuner.restore`` hint)."""
    return shlex.join(["python", "-m", "tuner.launch", "--resume", "--name", spec.name,
                       "--storage-path", spec.storage_path])
