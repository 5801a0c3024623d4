"""The sweep system: ``python -m tuner.launch`` (CLI) -> :mod:`tuner.spec` (the spec, checked) ->
:mod:`tuner.sweep` (one sweep; its record and resume in :mod:`tuner.record`, the Ray Tune Tuner with
Optuna and ASHA in :mod:`tuner.ray_tuner`) with :mod:`tuner.tracking` (MLflow; its names in the
Ray-free :mod:`tuner.mlflow_schema`), :mod:`tuner.cluster` (Ray connection, resources) and
:mod:`tuner.summary` (results, best student); :mod:`tuner.study` (sensitivity studies) and
:mod:`tuner.reproduce` (the papers' comparison) run several sweeps."""
