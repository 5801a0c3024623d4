"""Where a sweep's results come from, recorded on its MLflow runs: the project's git commit and the
command line as tags (``mlflow.source.git.commit``, ``distill.command``), and the task's training,
dev (and test) files as MLflow dataset inputs (name, path, digest, rows) on the parent run.
Best effort: provenance never fails a sweep."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import warnings
from typing import Any

TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_COMMAND = "distill.command"
PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit() -> str | None:
    """The commit of the project's checkout (with ``-dirty`` when it has uncommitted changes)."""
    try:
        head = subprocess.run(["git", "-C", PROJECT, "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", PROJECT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def tags() -> dict[str, str]:
    """Provenance tags of every run of this process's sweep."""
    out = {TAG_COMMAND: shlex.join([os.path.basename(sys.executable), *sys.argv])[:5000]}
    commit = git_commit()
    if commit:
        out[TAG_GIT_COMMIT] = commit
    return out


def data_files(config: dict[str, Any]) -> dict[str, str]:
    """``{split: path}`` of the task's local files (nothing when it is read from the hub)."""
    from trainables.data import local_folder
    from trainables.data_files import find_split_file
    from trainables.tasks import get_task

    task = get_task(str(config["task"]), config.get("text_columns"), config.get("label_column"),
                    config.get("task_type"), config.get("data_dir"))
    folder = local_folder(task, config.get("data_dir"))
    if not folder:
        return {}
    out = {}
    for split in ("train", "dev", "test"):
        try:
            out[split] = find_split_file(folder, split)
        except Exception:  # no such split (test is optional)
            continue
    return out


def log_datasets(client, run_id: str, config: dict[str, Any]) -> None:
    """The task's files as dataset inputs of ``run_id`` (context = the split)."""
    import mlflow.data
    import pandas as pd
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for split, path in data_files(config).items():
        sep = "\t" if path.endswith(".tsv") else ","
        frame = (pd.read_json(path, lines=True) if path.endswith(".jsonl")
                 else pd.read_csv(path, sep=sep, quoting=3 if sep == "\t" else 0, dtype=str, keep_default_na=False))
        with warnings.catch_warnings():  # MLflow registers its local-file source twice and says so each time
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            dataset = mlflow.data.from_pandas(frame, source=path,
                                              name=f"{os.path.basename(os.path.dirname(path))}-{split}")
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", split)]))
    if inputs:
        client.log_inputs(run_id, datasets=inputs)
