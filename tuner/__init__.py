"""The sweep system: ``python -m tuner.launch`` (CLI) -> :mod:`tuner.sweep` (Ray Tune + Optuna +
ASHA) with :mod:`tuner.tracking` (MLflow; its names in the Ray-free :mod:`tuner.mlflow_schema`),
:mod:`tuner.cluster` (Ray connection, resources) and :mod:`tuner.summary` (results, best student);
:mod:`tuner.study` (sensitivity studies) and :mod:`tuner.reproduce` (the papers' comparison) run
several sweeps."""
