"""MLflow ``Run`` objects -> one typed pandas row each (the columns: see :mod:`analysis.store`).

Not ``mlflow.search_runs(output_format="pandas")``: that searches only the process-wide tracking
URI (a :class:`~analysis.store.Store` reads the store it was given, through its own client) and
leaves every param a string; here columns are typed like the config fields.
"""

from __future__ import annotations

import dataclasses
import types
import typing

import pandas as pd

from trainables.config import DistillConfig
from tuner.mlflow_schema import (TAG_ERROR, TAG_METHOD, TAG_PARENT, TAG_ROLE, TAG_SEED_RERUN, TAG_STATUS,
                                 TAG_STUDY, TAG_SWEEP, TAG_TASK, TAG_TRIAL_ID)

#: tag -> DataFrame column
TAG_COLUMNS = {
    TAG_ROLE: "role",
    TAG_SWEEP: "sweep",
    TAG_TRIAL_ID: "trial_id",
    TAG_STATUS: "trial_status",
    TAG_ERROR: "error",
    TAG_STUDY: "study",
    TAG_SEED_RERUN: "seed_rerun",
    TAG_PARENT: "parent_run_id",
}

#: params that are not config fields but are known to be integers
EXTRA_INT_PARAMS = ("teacher_params", "student_params", "teacher_layers", "student_layers")


# ---- typing params ----------------------------------------------------------------------------

_NONE_STRINGS = {"None", "none", "null", "", "nan", "NaN"}


def _config_types() -> dict[str, type]:
    hints = typing.get_type_hints(DistillConfig)
    out = {}
    for f in dataclasses.fields(DistillConfig):
        hint = hints[f.name]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        out[f.name] = hint
    out.update({name: int for name in EXTRA_INT_PARAMS})
    return out


PARAM_TYPES: dict[str, type] = _config_types()


def _as_bool(value):
    if value is None:
        return pd.NA
    low = str(value).strip().lower()
    return True if low in {"true", "1", "yes"} else False if low in {"false", "0", "no"} else pd.NA


def typed_column(name: str, values: pd.Series) -> pd.Series:
    """Strings as MLflow stores them -> the column's type (config field type where known)."""
    values = values.astype(object).where(~values.isin(_NONE_STRINGS) & values.notna(), None)
    typ = PARAM_TYPES.get(name)
    if typ is bool:
        return values.map(_as_bool).astype("boolean")
    if typ in (int, float) or typ is None:
        numbers = pd.to_numeric(values, errors="coerce")
        parsed = numbers.notna() | values.isna()
        if typ is None and not parsed.all():
            return values  # free text
        if typ is int and (numbers.dropna() % 1 == 0).all():
            return numbers.astype("Int64")
        return numbers.astype(float)
    return values


def runs_frame(runs: list) -> pd.DataFrame:
    """MLflow ``Run`` objects -> one typed row each (see the module docstring for the columns)."""
    rows, param_names, metric_names = [], set(), set()
    for run in runs:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        row = {"run_id": run.info.run_id, "run_name": run.info.run_name,
               "run_status": run.info.status,
               "start_time": run.info.start_time, "end_time": run.info.end_time}
        for tag, col in TAG_COLUMNS.items():
            row[col] = tags.get(tag)
        row.update({f"param:{k}": v for k, v in params.items()})
        row.update({f"metric:{k}": v for k, v in metrics.items()})
        row["tag:method"], row["tag:task"] = tags.get(TAG_METHOD), tags.get(TAG_TASK)
        param_names.update(params)
        metric_names.update(metrics)
        rows.append(row)
    base = ["run_id", "run_name", "run_status", "start_time", "end_time", "method", "task",
            *TAG_COLUMNS.values()]
    if not rows:
        return pd.DataFrame(columns=base)
    raw = pd.DataFrame(rows)
    out = raw[["run_id", "run_name", "run_status"]].copy()
    for col in ("start_time", "end_time"):
        out[col] = pd.to_datetime(raw[col], unit="ms", utc=True)
    # method / task: the tag (a bring-your-own task's tag is its name, the param its folder)
    for name in ("method", "task"):
        param = raw[f"param:{name}"] if f"param:{name}" in raw else pd.Series(None, index=raw.index)
        out[name] = raw[f"tag:{name}"].where(raw[f"tag:{name}"].notna(), param)
    for col in TAG_COLUMNS.values():
        out[col] = raw[col]
    out["seed_rerun"] = out["seed_rerun"].map(_as_bool).astype("boolean")
    columns = {}
    for name in sorted(param_names - {"method", "task"}):
        columns[name] = typed_column(name, raw[f"param:{name}"])
    for name in sorted(metric_names):
        metric = raw[f"metric:{name}"].astype(float)
        if name in columns:  # logged as both: fill the param's gaps from the metric
            param = columns[name]
            if param.isna().any() and pd.api.types.is_numeric_dtype(param):
                filled = param.astype(float).where(param.notna(), metric)
                columns[name] = filled.round().astype("Int64") if param.dtype == "Int64" else filled
        elif name not in out:
            columns[name] = metric
    return pd.concat([out, pd.DataFrame(columns, index=raw.index)], axis=1)
