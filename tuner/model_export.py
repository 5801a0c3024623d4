"""The best student as an MLflow model: a pyfunc that classifies text, logged on the sweep's parent
run (it appears under the experiment's Logged models), optionally registered in the Model Registry.

``mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"text": [...]}))`` returns one row per
input: ``label`` (the task's label name, from the saved config's ``id2label``) and ``score`` (its
probability); a regression task returns ``score`` only (the predicted value); a sentence-pair task
takes a second column ``text_pair``. Loading needs this package installed (the pyfunc class lives
here) and the student's files, which the model carries as an artifact.
"""

from __future__ import annotations

import os

import mlflow.pyfunc

MODEL_NAME = "student_model"
EXAMPLE_TEXTS = ["a gripping, beautifully acted film", "dull and far too long"]


class StudentClassifier(mlflow.pyfunc.PythonModel):
    """Tokenizer + sequence-classification student from the ``student`` artifact."""

    def load_context(self, context) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = context.artifacts["student"]
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).eval()

    def predict(self, context, model_input, params=None):
        import pandas as pd
        import torch

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        texts = frame["text"].astype(str).tolist()
        pairs = frame["text_pair"].astype(str).tolist() if "text_pair" in frame else None
        enc = self.tokenizer(texts, pairs, padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            logits = self.model(**enc).logits
        if logits.shape[-1] == 1:  # regression
            return pd.DataFrame({"score": logits[:, 0].double().numpy()})
        probs = logits.softmax(-1)
        best = probs.argmax(-1)
        names = self.model.config.id2label
        return pd.DataFrame({"label": [str(names[int(i)]) for i in best],
                             "score": probs.gather(-1, best[:, None])[:, 0].double().numpy()})


def takes_pairs(config: dict) -> bool:
    """Whether the run's task classifies sentence pairs (the model then takes ``text_pair``)."""
    from trainables.tasks import get_task

    try:
        task = get_task(str(config["task"]), config.get("text_columns"), config.get("label_column"),
                        config.get("task_type"), config.get("data_dir"))
    except Exception:
        return False
    return len(task.text_columns) == 2


def log_student_model(uri: str, run_id: str, student_dir: str, *, pair: bool = False,
                      register_as: str | None = None) -> str:
    """Log the student at ``student_dir`` as an MLflow model on run ``run_id`` (with a signature
    and an input example); register it as ``register_as`` when given. Returns the model URI."""
    import mlflow
    import pandas as pd
    import torch
    import transformers
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [ColSpec("string", "text")] + ([ColSpec("string", "text_pair")] if pair else [])
    outputs = Schema([ColSpec("string", "label", required=False), ColSpec("double", "score")])
    example = pd.DataFrame({"text": EXAMPLE_TEXTS, **({"text_pair": EXAMPLE_TEXTS[::-1]} if pair else {})})
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME, python_model=StudentClassifier(), artifacts={"student": os.path.abspath(student_dir)},
            signature=ModelSignature(inputs=Schema(inputs), outputs=outputs), input_example=example,
            registered_model_name=register_as,
            # stated, not inferred (inference would load the model in a subprocess)
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"transformers=={transformers.__version__}",
                              f"mlflow=={mlflow.__version__}", "pandas", "distill-tune"])
    return info.model_uri
