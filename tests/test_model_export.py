"""The best student as an MLflow model: logged on a run, registered, loaded back with pyfunc and
classifying sentences with the task's label names."""

from __future__ import annotations

import pandas as pd
from mlflow import MlflowClient
from store_template import empty_store

from trainables.models import build_student
from trainables.tasks import get_task
from tuner import model_export, tracking


def test_the_student_loads_back_as_a_pyfunc_model_that_classifies(tmp_path, tiny_bert):
    from transformers import AutoTokenizer

    task = get_task("sst2")
    student = build_student(tiny_bert, None, 1, task, eager=False)
    student_dir = tmp_path / "best_student"
    student.save_pretrained(student_dir)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(student_dir)
    uri = empty_store(tmp_path / "mlflow.db")
    exp = tracking.ensure_experiment(uri, "export")
    parent = tracking.start_parent_run(uri, exp, "sweep-x", "kd", "sst2")

    model_uri = model_export.log_student_model(uri, parent, str(student_dir), register_as="sst2-student")

    import mlflow

    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(model_uri)
    out = model.predict(pd.DataFrame({"text": ["a fine film", "a dreadful bore", "ok"]}))
    assert list(out.columns) == ["label", "score"] and len(out) == 3
    assert set(out["label"]) <= {"negative", "positive"} and ((out["score"] > 0.5 - 1e-6) & (out["score"] <= 1)).all()
    assert model.metadata.signature.inputs.input_names() == ["text"]
    client = MlflowClient(uri)
    versions = client.search_model_versions("name='sst2-student'")
    assert len(versions) == 1 and versions[0].run_id == parent
    logged = client.search_logged_models(experiment_ids=[exp])  # under the experiment's Logged models
    assert [m.name for m in logged] == [model_export.MODEL_NAME] and logged[0].source_run_id == parent
    # the registered version loads too and agrees
    again = mlflow.pyfunc.load_model("models:/sst2-student/1").predict(pd.DataFrame({"text": ["a fine film"]}))
    assert again["label"][0] == out["label"][0]
