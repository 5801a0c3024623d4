"""Tables and figures from what the sweeps recorded in MLflow.

* :mod:`analysis.store`: MLflow runs -> typed pandas DataFrames (one row per trial run);
* :mod:`analysis.compare`: the method comparison table (``python -m analysis.compare``);
* :mod:`analysis.runs_frame`: MLflow runs -> one typed row each;
* :mod:`analysis.studies`: loss-weight / temperature / student-size studies: points and figures
  (``python -m analysis.sensitivity``, the same command as ``python -m tuner.study``, runs one);
* :mod:`analysis.dynamics`: alpha/beta and teacher/student curves against the training step
  (``python -m analysis.dynamics``);
* :mod:`analysis.paper_table`: per-seed results -> the papers' table with paired Δ vs KD
  (``python -m analysis.paper_table --from reproduce.csv``; ``python -m tuner.reproduce`` runs it);
* :mod:`analysis.plots`: the matplotlib figures; every function returns the data it plotted.
"""
