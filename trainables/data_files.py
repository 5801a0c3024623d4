"""Reading one task file (.tsv, .csv or .jsonl) into a ``datasets.Dataset`` of strings, and finding a
split's file in a folder; every problem with a user's file is a :class:`UserError`.

Files are read with ``datasets``' packaged builders (cached on disk); every column is read as a
string (``"NA"`` or ``"null"`` stay text); .tsv files are read without CSV quoting, as the shared
benchmark copies need. :mod:`trainables.tasks` reads a bring-your-own training file with it,
:mod:`trainables.data` every split.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from trainables.errors import UserError

if TYPE_CHECKING:  # datasets and pandas load when a file is read (the task table stays light)
    import datasets


def string_features(columns: Sequence[str]) -> datasets.Features:
    import datasets

    return datasets.Features({c: datasets.Value("string") for c in columns})


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def _build(path: str, builder: str, **kwargs) -> datasets.Dataset:
    """One file through a packaged ``datasets`` builder (cached), errors as UserError."""
    import datasets

    try:
        return datasets.load_dataset(builder, data_files={"train": path}, split="train", **kwargs)
    except Exception as err:  # any failure to parse a user's file is bad input
        raise UserError(f"cannot read {path}: {one_line(_root_cause(err))}") from err


def _header(path: str, delimiter: str, quoting: int) -> list[str]:
    """Column names of a delimited file; checks that there is at least one data row."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = csv.reader(f, delimiter=delimiter, quoting=quoting)
            header = next(rows, None)
            first_row = next((row for row in rows if row), None)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"cannot read {path}: {one_line(err)}") from err
    if not header:
        raise UserError(f"empty file {path}: expected a header row and data rows")
    if first_row is None:
        raise UserError(f"empty file {path}: a header row but no data rows")
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise UserError(f"duplicate column name(s) {', '.join(duplicates)} in the header of {path}")
    return header


def _read_delimited(path: str, *, delimiter: str, quoting: int) -> datasets.Dataset:
    import pandas as pd

    columns = _header(path, delimiter, quoting)
    with warnings.catch_warnings():
        # a row with more fields than the header would otherwise be truncated with only a warning
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return _build(path, "csv", delimiter=delimiter, quoting=quoting, features=string_features(columns),
                      keep_default_na=False, index_col=False, encoding="utf-8-sig")


def _stringify(batch: dict[str, list]) -> dict[str, list]:
    return {c: [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
            for c, values in batch.items()}


def _read_jsonl(path: str) -> datasets.Dataset:
    ds = _build(path, "json")
    if len(ds) == 0:
        raise UserError(f"empty file {path}: no JSON lines")
    return ds.map(_stringify, batched=True, features=string_features(ds.column_names))


_DELIMITERS = {".tsv": ("\t", csv.QUOTE_NONE), ".csv": (",", csv.QUOTE_MINIMAL)}

READERS: dict[str, Callable[[str], datasets.Dataset]] = {
    ".tsv": partial(_read_delimited, delimiter="\t", quoting=csv.QUOTE_NONE),
    ".csv": partial(_read_delimited, delimiter=",", quoting=csv.QUOTE_MINIMAL),
    ".jsonl": _read_jsonl,
}


def read_table(path: str) -> datasets.Dataset:
    """A .tsv/.csv/.jsonl file with every column as strings (None where a JSON value is missing)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in READERS:
        raise UserError(f"cannot read {path}: unsupported file type {suffix!r}; valid: {', '.join(READERS)}")
    if not os.path.isfile(path):
        raise UserError(f"cannot read {path}: not a file")
    if os.path.getsize(path) == 0:
        raise UserError(f"empty file {path}")
    return READERS[suffix](path)


def find_split_file(folder: str, split: str) -> str:
    """The one ``<split>.tsv|csv|jsonl`` file of a folder."""
    names = sorted(os.listdir(folder))
    matches = [n for n in names if os.path.splitext(n)[0] == split and os.path.splitext(n)[1].lower() in READERS]
    if len(matches) != 1:
        problem = "no" if not matches else "more than one"
        expected = " or ".join(f"{split}{suffix}" for suffix in READERS)
        raise UserError(f"{problem} {split} file in {folder}: expected one of {expected}; "
                        f"found: {', '.join(names) or 'nothing'}")
    return os.path.join(folder, matches[0])


def require_columns(ds: datasets.Dataset, columns: Sequence[str], source: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise UserError(f"column(s) {', '.join(map(repr, missing))} not in {source}; "
                        f"its columns: {', '.join(ds.column_names)}")


def column_names(path: str) -> list[str]:
    """The columns of a file: a delimited file's header (its rows are not parsed), a .jsonl file's keys."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in _DELIMITERS:
        return _header(path, *_DELIMITERS[suffix])
    return read_table(path).column_names
