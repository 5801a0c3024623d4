"""The task table: what each task's columns, labels and metrics are.

A task is either a row of :data:`TASKS` (looked up by name) or a *bring-your-own* folder holding
``train.*`` and ``dev.*`` files (``.tsv``, ``.csv`` or ``.jsonl``), described by the user's text and
label columns. :func:`get_task` resolves both.

Labels are strings in id order (``labels[i]`` has id ``i``); ``labels=None`` means regression. File
values are compared with :func:`label_key`, so ``1``, ``"1"`` and ``"1.0"`` are the same label.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from trainables.data_files import find_split_file, read_table, require_columns
from trainables.errors import UserError


@dataclass(frozen=True)
class HubSource:
    """Where a task lives on the Hugging Face hub, for when there is no local copy."""

    path: str
    config: str | None = None
    columns: tuple[tuple[str, str], ...] = ()  # (hub column, task column) renames
    train_split: str = "train"
    dev_split: str = "validation"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    text_columns: tuple[str, ...]  # one column, or a pair
    label_column: str
    labels: tuple[str, ...] | None  # label values as strings, in id order; None => regression
    metrics: tuple[str, ...]  # names from metrics.METRICS
    primary_metric: str
    hub: HubSource | None = None
    path: str | None = None  # bring-your-own folder
    #: what each label means, in id order, for the saved model's ``id2label`` (default: the labels)
    label_names: tuple[str, ...] | None = None

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def output_names(self) -> tuple[str, ...]:
        """One name per model output: the labels, or the label column for regression's single output."""
        return (self.label_column,) if self.labels is None else self.labels

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.output_names)}

    @property
    def id2label(self) -> dict[int, str]:
        """Output id -> label name, for a saved model's config (the names a user reads:
        ``positive``, not ``1``). Always num_labels entries: transformers derives a config's
        num_labels from id2label."""
        return dict(enumerate(self.label_names or self.output_names))

    @property
    def config_label2id(self) -> dict[str, int]:
        """The inverse of :attr:`id2label`, for a saved model's config (data rows map through
        :attr:`label2id`)."""
        return {name: i for i, name in self.id2label.items()}


# ---- the task table -----------------------------------------------------------------------------

BINARY = ("0", "1")

# The 13 fine-grained ChemProt relation types of the SciBERT copy, sorted alphabetically (the same
# rule as bring-your-own string labels), so ids are stable whatever order the file lists them in.
CHEMPROT_LABELS = (
    "ACTIVATOR", "AGONIST", "AGONIST-ACTIVATOR", "AGONIST-INHIBITOR", "ANTAGONIST",
    "DOWNREGULATOR", "INDIRECT-DOWNREGULATOR", "INDIRECT-UPREGULATOR", "INHIBITOR",
    "PRODUCT-OF", "SUBSTRATE", "SUBSTRATE_PRODUCT-OF", "UPREGULATOR",
)


def _glue(config: str, **renames: str) -> HubSource:
    return HubSource("nyu-mll/glue", config, columns=tuple(renames.items()))


TASKS: dict[str, TaskSpec] = {
    task.name: task
    for task in (
        # label names as the GLUE datasets define them
        TaskSpec("sst2", ("sentence",), "label", BINARY, ("accuracy",), "accuracy", _glue("sst2"),
                 label_names=("negative", "positive")),
        TaskSpec("cola", ("sentence",), "label", BINARY, ("mcc", "accuracy"), "mcc", _glue("cola"),
                 label_names=("unacceptable", "acceptable")),
        TaskSpec("mrpc", ("sentence1", "sentence2"), "label", BINARY, ("f1", "accuracy"), "f1",
                 _glue("mrpc"), label_names=("not_equivalent", "equivalent")),
        TaskSpec("stsb", ("sentence1", "sentence2"), "score", None, ("pearson", "spearman"), "pearson",
                 _glue("stsb", label="score")),
        TaskSpec("chemprot", ("text",), "label", CHEMPROT_LABELS, ("micro_f1", "macro_f1"), "micro_f1"),
        TaskSpec("gad", ("sentence",), "label", BINARY, ("f1", "accuracy"), "f1",
                 label_names=("no_association", "association")),
    )
}

# Metrics of a bring-your-own task, by kind: (metrics, primary metric).
BYO_METRICS: dict[str, tuple[tuple[str, ...], str]] = {
    "regression": (("pearson", "spearman"), "pearson"),
    "binary": (("accuracy", "f1"), "accuracy"),
    "multiclass": (("accuracy", "macro_f1"), "accuracy"),
}


# ---- label values -------------------------------------------------------------------------------

def as_number(value: object) -> float | None:
    """``value`` as a finite float, or None when it is not a number."""
    if isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def label_key(value: object) -> str:
    """Canonical string of a class label: stripped, integer-valued numbers without decimals."""
    number = as_number(value)
    if number is not None and number.is_integer():
        return str(int(number))
    return str(value).strip()


# ---- lookup ---------------------------------------------------------------------------------------

def get_task(name_or_path: str, text_columns: str | None = None,
             label_column: str | None = None, task_type: str | None = None,
             data_dir: str | None = None) -> TaskSpec:
    """A task of the table by name (case-insensitive), or a bring-your-own task from a folder:
    a path, or a short name of a folder under ``data_dir`` (default ``$TUNER_DATA_DIR``), so
    ``--task rte`` finds ``<data_dir>/rte/``.

    Table names win over a folder of the same name (write ``./sst2`` for the folder).
    ``text_columns`` ("a" or "a,b"), ``label_column`` and ``task_type`` (classification |
    regression; default inferred from the labels) are for bring-your-own folders only.
    """
    task = TASKS.get(name_or_path.strip().lower())
    if task is not None:
        _check_table_columns(task, text_columns, label_column)
        if task_type and task_type != ("regression" if task.is_regression else "classification"):
            raise UserError(f"task_type={task_type!r} does not apply to table task {task.name!r}; "
                            "task_type is for bring-your-own folders")
        return task
    if os.path.isdir(name_or_path):
        return _byo_task(name_or_path, text_columns, label_column, task_type)
    data_dir = data_dir or os.environ.get("TUNER_DATA_DIR")
    under = os.path.join(data_dir, name_or_path) if data_dir and not os.path.isabs(name_or_path) else None
    if under and os.path.isdir(under):
        return _byo_task(under, text_columns, label_column, task_type)
    where = f" or a folder under the data dir {data_dir}" if data_dir else ""
    raise UserError(f"unknown task {name_or_path!r}; valid: {', '.join(TASKS)}, the path of a folder "
                    f"holding train.* and dev.* files (.tsv, .csv, .jsonl){where}")


def _check_table_columns(task: TaskSpec, text_columns: str | None, label_column: str | None) -> None:
    given = {"text_columns": (text_columns and _split_columns(text_columns), task.text_columns),
             "label_column": (label_column, task.label_column)}
    for option, (value, own) in given.items():
        if value and value != own:
            raise UserError(f"{option}={value!r} does not apply to table task {task.name!r} (its own is "
                            f"{own!r}); {option} is for bring-your-own folders")


def _split_columns(text_columns: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text_columns.split(",") if c.strip())


def _byo_task(folder: str, text_columns: str | None, label_column: str | None,
              task_type: str | None = None) -> TaskSpec:
    if not text_columns or not label_column:
        raise UserError(f"bring-your-own task {folder!r} needs text_columns (\"a\" or \"a,b\") and "
                        f"label_column; got text_columns={text_columns!r}, label_column={label_column!r}")
    columns = _split_columns(text_columns)
    if len(columns) not in (1, 2):
        raise UserError(f"text_columns={text_columns!r} must name 1 or 2 columns (\"a\" or \"a,b\")")
    train_file = find_split_file(folder, "train")
    find_split_file(folder, "dev")
    train = read_table(train_file)
    require_columns(train, (*columns, label_column), train_file)
    labels = infer_labels(train.select_columns([label_column])[:][label_column], train_file, task_type)
    if labels is not None and task_type is None:
        _check_not_an_id(train, label_column, len(labels), train_file, columns)
    kind = "regression" if labels is None else "binary" if len(labels) == 2 else "multiclass"
    metrics, primary = BYO_METRICS[kind]
    name = os.path.basename(os.path.normpath(folder))
    return TaskSpec(name, columns, label_column, labels, metrics, primary, path=os.path.abspath(folder))


TASK_TYPES = ("classification", "regression")
#: a label column with more distinct values than this share of the rows (and than MAX_GUESSED_CLASSES)
#: is taken for an id column passed by mistake
ID_LIKE_SHARE = 0.5
MAX_GUESSED_CLASSES = 100


def _check_not_an_id(table, label_column: str, num_labels: int, source: str, text_columns) -> None:
    """A label column with nearly one value per row (an ``index`` or id column passed by mistake)
    is an error naming the columns that look like labels, not a task with thousands of classes."""
    rows = table.num_rows
    if num_labels <= MAX_GUESSED_CLASSES or num_labels <= ID_LIKE_SHARE * rows:
        return
    candidates = []
    for name in table.column_names:
        if name in (label_column, *text_columns):
            continue
        distinct = len({label_key(v) for v in table.select_columns([name])[:][name]})
        if 2 <= distinct <= MAX_GUESSED_CLASSES:
            candidates.append(f"{name!r} ({distinct} values)")
    hint = (f"columns that look like labels: {', '.join(candidates)}; pass --label-column NAME"
            if candidates else "pass the label column with --label-column")
    raise UserError(f"label column {label_column!r} of {source} has {num_labels} distinct values in {rows} rows: "
                    f"it looks like an id, not a label; {hint} (or --task-type classification to keep "
                    f"{num_labels} classes, or --task-type regression)")



def infer_labels(values: list, source: str, task_type: str | None = None) -> tuple[str, ...] | None:
    """Label set of a training file's label column, or None for regression.

    ``task_type`` None infers it: regression when every value is a number and at least one is not
    an integer; classification when none is a number or all are integers; a column of numbers
    with some non-numeric values is an error that lists them and asks for ``--task-type``.
    Class labels are the sorted unique :func:`label_key` values: numerically when all are
    integers, else as strings.
    """
    if task_type is not None and task_type not in TASK_TYPES:
        raise UserError(f"unknown task type {task_type!r}; valid: {', '.join(TASK_TYPES)}")
    missing = [i for i, v in enumerate(values) if v is None or str(v).strip() == ""]
    if missing:
        raise UserError(f"empty label at data row {missing[0] + 1} of {source}")
    numbers = [as_number(v) for v in values]
    odd = [i for i, n in enumerate(numbers) if n is None]
    if odd and (task_type == "regression" or (task_type is None and len(odd) < len(values))):
        shown = ", ".join(f"{i + 1} ({values[i]!r})" for i in odd[:5]) + (", ..." if len(odd) > 5 else "")
        raise UserError(f"the label column of {source} is numeric except at {len(odd)} data row(s): {shown}; "
                        f"fix those rows for --task-type regression, or pass --task-type classification "
                        f"to read every value as a class")
    if task_type == "regression" or (task_type is None and not odd
                                      and not all(n.is_integer() for n in numbers)):
        return None
    if not odd and all(n.is_integer() for n in numbers):
        labels = tuple(str(n) for n in sorted({int(n) for n in numbers}))
    else:
        labels = tuple(sorted({label_key(v) for v in values}))
    if len(labels) < 2:
        raise UserError(f"label column of {source} has only the value(s) {list(labels)}; a classification "
                        "task needs at least 2 labels")
    return labels
