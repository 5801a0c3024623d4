"""The sweep system: ``python -m tuner.launch`` (CLI) -> :mod:`tuner.sweep` (Ray Tune + Optuna +
ASHA) with :mod:`tuner.tracking` (MLflow), :mod:`tuner.cluster` (Ray connection, resources) and
:mod:`tuner.summary` (results, best student)."""
