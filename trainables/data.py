"""Reading a task's data into train / quiz / dev splits, tokenising them and batching them.

Where the rows come from, in order:

1. a local copy: the bring-your-own folder of the task, else ``<data_dir>/<task>/`` (``data_dir``
   defaults to ``$TUNER_DATA_DIR``), holding ``train.*`` and ``dev.*`` (.tsv, .csv or .jsonl);
2. otherwise the task's hub source (``datasets.load_dataset(path, config)``).

Local files are read (:mod:`trainables.data_files`) with ``datasets``' packaged builders, so they and every ``.map`` over them
(label conversion, tokenisation) are cached on disk. Every column is read as a string (``"NA"`` or
``"null"`` stay text); .tsv files are read without CSV quoting, as the shared benchmark copies need.

The three splits of :class:`TaskData`:

* ``train``: the rows the student takes gradient steps on;
* ``quiz``: a seeded held-out ``quiz_fraction`` of the *training file* (never trained on);
* ``dev``: evaluation and model selection only; never used as quiz;
* ``test`` (optional): a labelled ``test.*`` file in the local folder (ChemProt, GAD, bring your
  own); the selected student is scored on it once, at the end. A test file without the label
  column (GLUE's) means no test split.

Which rows train (``hold_out_quiz``): methods with a quiz set train on the rows left after the
quiz split; the others, by default, on the whole (capped) training file. The subsample and the
quiz split are drawn with the *data seed*, never the training seed, so every seed of a run, and
the teacher stage, see the same rows.

Every split has the task's text columns, ``labels`` (int64 class id, or float32 regression target)
and ``idx`` (the row's position in its source file, 0-based). Error messages number rows as
"data row N": 1-based, header excluded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from transformers import DataCollatorWithPadding

from trainables.data_files import (READERS, column_names, find_split_file, one_line, read_table,  # noqa: F401
                                   require_columns, string_features)
from trainables.errors import UserError
from trainables.tasks import TaskSpec, as_number, label_key

SPLITS = ("train", "dev")
# max_eval_samples takes the same dev rows in every run, whatever the run's seed.
EVAL_SUBSET_SEED = 0


@dataclass
class TaskData:
    task: TaskSpec
    train: datasets.Dataset
    quiz: datasets.Dataset
    dev: datasets.Dataset
    test: datasets.Dataset | None = None


# ---- from raw rows to (texts, labels, idx) ---------------------------------------------------------

def _label_parser(task: TaskSpec, source: str) -> Callable[[object, int], int | float]:
    """``parse(value, row)``: class id or regression target of one raw label value."""
    if task.is_regression:
        def parse(value, row):
            number = as_number(value)
            if number is None:
                raise UserError(f"regression target {value!r} at data row {row + 1} of {source} "
                                "is not a (finite) number")
            return number
    else:
        label2id = task.label2id

        def parse(value, row):
            label_id = label2id.get(label_key(value)) if value is not None else None
            if label_id is None:
                raise UserError(f"label {value!r} at data row {row + 1} of {source} is not a label of "
                                f"task {task.name!r}; valid: {', '.join(task.labels)}")
            return label_id
    return parse


def _prepare_split(ds: datasets.Dataset, task: TaskSpec, source: str) -> datasets.Dataset:
    """Keep the text columns, add ``labels`` (validated) and ``idx`` (file row)."""
    require_columns(ds, (*task.text_columns, task.label_column), source)
    parse = _label_parser(task, source)

    def convert(batch, indices):
        for column in task.text_columns:
            missing = next((i for i, text in zip(indices, batch[column]) if text is None), None)
            if missing is not None:
                raise UserError(f"no text in column {column!r} at data row {missing + 1} of {source}")
        labels = [parse(value, row) for value, row in zip(batch[task.label_column], indices)]
        return {**{c: batch[c] for c in task.text_columns}, "labels": labels, "idx": indices}

    features = datasets.Features({
        **string_features(task.text_columns),
        "labels": datasets.Value("float32" if task.is_regression else "int64"),
        "idx": datasets.Value("int64"),
    })
    return ds.map(convert, batched=True, with_indices=True, remove_columns=ds.column_names,
                  features=features, desc=f"labels of {os.path.basename(source)}")


def local_folder(task: TaskSpec, data_dir: str | None) -> str | None:
    """The folder a local copy of ``task`` would be in (None when no data dir is set)."""
    if task.path:
        return task.path
    data_dir = data_dir or os.environ.get("TUNER_DATA_DIR")
    return os.path.join(data_dir, task.name) if data_dir else None


def _load_from_hub(task: TaskSpec, folder: str | None) -> dict[str, datasets.Dataset]:
    looked = f"looked in {folder}" if folder else "no data dir was given"
    hint = f"set the data dir with TUNER_DATA_DIR or --data-dir (it holds {task.name}/train.tsv and dev.tsv)"
    hub = task.hub
    if hub is None:
        raise UserError(f"no local copy of task {task.name!r} ({looked}) and the task has no hub source, "
                        f"so a local copy is required: {hint}")
    try:
        loaded = datasets.load_dataset(hub.path, hub.config)
    except Exception as err:  # offline, unknown repo, network: all reported the same way
        raise UserError(f"no local copy of task {task.name!r} ({looked}; {hint}), and loading "
                        f"{hub.path} {hub.config} from the hub failed: {one_line(err)}") from err
    hub_splits = {"train": hub.train_split, "dev": hub.dev_split}
    return {split: _prepare_split(loaded[hub_split].rename_columns(dict(hub.columns)), task,
                                  f"{hub.path} {hub.config} {hub_split}")
            for split, hub_split in hub_splits.items()}


def load_splits(task: TaskSpec, data_dir: str | None) -> dict[str, datasets.Dataset]:
    """The full, validated ``train`` and ``dev`` files of a task (before any cap or quiz split)."""
    folder = local_folder(task, data_dir)
    if folder is None or not os.path.isdir(folder):
        return _load_from_hub(task, folder)
    files = {split: find_split_file(folder, split) for split in SPLITS}
    splits = {split: _prepare_split(read_table(path), task, path) for split, path in files.items()}
    test = labelled_test_file(folder, task)
    if test is not None:
        splits["test"] = _prepare_split(read_table(test), task, test)
    return splits


def labelled_test_file(folder: str, task: TaskSpec) -> str | None:
    """The folder's ``test.*`` file when it has the task's label column (GLUE's test files have
    none: no test split then)."""
    names = [n for n in sorted(os.listdir(folder))
             if os.path.splitext(n)[0] == "test" and os.path.splitext(n)[1].lower() in READERS]
    if not names:
        return None
    path = find_split_file(folder, "test")
    return path if task.label_column in column_names(path) else None


# ---- splits -------------------------------------------------------------------------------------------

def _subsample(ds: datasets.Dataset, n: int | None, seed: int, option: str) -> datasets.Dataset:
    """A seeded random subset of ``n`` rows, kept in file order (all rows when n is None or large)."""
    if n is None or n >= len(ds):
        return ds
    if n < 1:
        raise UserError(f"{option} must be >= 1, got {n}")
    rows = np.sort(np.random.default_rng(seed).choice(len(ds), size=n, replace=False))
    return ds.select(rows)


def load_task_data(task: TaskSpec, data_dir: str | None, *, max_train_samples: int | None = None,
                   max_eval_samples: int | None = None, quiz_fraction: float = 0.1,
                   seed: int = 42, hold_out_quiz: bool = True) -> TaskData:
    """Train / quiz / dev (/ test) splits of a task.

    ``seed`` is the *data seed*: ``max_train_samples`` caps the training file *before* the quiz
    split, to a random subset drawn with it, and the quiz split is
    ``train_test_split(quiz_fraction, seed=seed)``: disjoint from train and the same for the same
    seed. ``hold_out_quiz=False`` keeps the quiz rows in ``train`` too (for methods that have no
    quiz set; ``quiz`` still names the rows a quiz set would be). ``max_eval_samples`` caps dev
    and test to subsets drawn with the fixed :data:`EVAL_SUBSET_SEED`.
    """
    if not 0.0 < quiz_fraction < 1.0:
        raise UserError(f"quiz_fraction must be in (0, 1), got {quiz_fraction}")
    splits = load_splits(task, data_dir)
    train = _subsample(splits["train"], max_train_samples, seed, "max_train_samples")
    dev = _subsample(splits["dev"], max_eval_samples, EVAL_SUBSET_SEED, "max_eval_samples")
    test = splits.get("test")
    if test is not None:
        test = _subsample(test, max_eval_samples, EVAL_SUBSET_SEED, "max_eval_samples")
    try:
        parts = train.train_test_split(test_size=quiz_fraction, seed=seed)
    except ValueError as err:
        raise UserError(f"cannot hold out quiz_fraction={quiz_fraction} of {len(train)} training rows: "
                        f"{one_line(err)}") from err
    return TaskData(task=task, train=parts["train"] if hold_out_quiz else train, quiz=parts["test"],
                    dev=dev, test=test)


# ---- model inputs ------------------------------------------------------------------------------------

def tokenize_split(ds: datasets.Dataset, tokenizer, task: TaskSpec, max_seq_length: int,
                   rows: bool = False) -> datasets.Dataset:
    """Model inputs (truncated, unpadded) plus ``labels`` (and with ``rows`` the row's position in
    the split, ``row``, the key of cached teacher outputs), in torch format; cached by ``datasets``."""
    def encode(batch, indices):
        out = dict(tokenizer(*(batch[c] for c in task.text_columns), truncation=True, max_length=max_seq_length))
        if rows:
            out["row"] = indices
        return out

    drop = [c for c in ds.column_names if c != "labels"]
    out = ds.map(encode, batched=True, with_indices=True, remove_columns=drop, desc="tokenising")
    out.set_format("torch")
    return out


def token_lengths(ds: datasets.Dataset) -> list[int]:
    return [len(ids) for ids in ds.with_format(None)["input_ids"]]


def sort_by_length(ds: datasets.Dataset) -> datasets.Dataset:
    """The split ordered by token length (for evaluation: less padding, same metrics)."""
    lengths = token_lengths(ds)
    return ds.select(sorted(range(len(ds)), key=lambda i: lengths[i]))


def make_loader(ds: datasets.Dataset, tokenizer, batch_size: int, *, shuffle: bool, seed: int = 0,
                num_workers: int = 0, group_by_length: bool = False) -> torch.utils.data.DataLoader:
    """Batches of a tokenised split: dicts of tensors padded per batch, with ``labels``.

    ``shuffle`` draws the order from a seeded generator (the engine re-seeds it each epoch);
    with ``group_by_length`` the shuffled rows are grouped by length within chunks of 50 batches
    (``transformers``' ``LengthGroupedSampler``, as the HF Trainer's ``group_by_length``), so a
    batch pads to rows of similar length."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    sampler = None
    if shuffle and group_by_length:
        from transformers.trainer_pt_utils import LengthGroupedSampler

        sampler = LengthGroupedSampler(batch_size, lengths=token_lengths(ds), generator=generator)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle and sampler is None,
                                       sampler=sampler, generator=generator,
                                       collate_fn=DataCollatorWithPadding(tokenizer),
                                       num_workers=num_workers)
