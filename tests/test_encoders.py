"""Encoders other than BERT: every method runs end-to-end (``trainables.experiment.run``: teacher
fine-tuning stage, truncated student, training, evaluation, speed-up) on real SST-2 rows with tiny
random DistilBERT, RoBERTa and ELECTRA backbones (and BERT, the reference); every forward gets
only the inputs its signature names; teachers (or a student source) with different tokenizers
are a clear error, even with vocabularies of one size."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from meta_helpers import one_thread  # noqa: F401 (autouse fixture)
from tiny_models import make_permuted_bert_tokenizer, make_tiny_bert, make_tiny_encoder

from trainables.config import DistillConfig
from trainables.errors import UserError
from trainables.experiment import run
from trainables.methods import METHODS
from trainables.models import encoder_layer_prefix, forward_inputs, load_classifier, num_layers
from trainables.tasks import get_task

ENCODERS = ("distilbert", "roberta", "electra")
METHOD_NAMES = ("finetune", "kd", "pkd", "metadistil", "meta-adaptive-kd", "reptile-distil")
LAYER_LISTS = {"bert": "bert.encoder.layer", "distilbert": "distilbert.transformer.layer",
               "roberta": "roberta.encoder.layer", "electra": "electra.encoder.layer"}


@pytest.fixture(scope="module")
def backbones(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("encoders")
    return {arch: make_tiny_encoder(str(root / arch), arch, layers=2) for arch in (*ENCODERS, "bert")}


def test_the_method_list_is_complete():
    assert set(METHOD_NAMES) == set(METHODS)


@pytest.mark.parametrize("arch", [*ENCODERS, "bert"])
def test_student_is_the_truncated_backbone_and_gets_only_its_inputs(backbones, arch):
    task = get_task("sst2")
    teacher = load_classifier(backbones[arch], task)
    student = load_classifier(backbones[arch], task, num_hidden_layers=1)
    assert num_layers(teacher) == 2 and num_layers(student) == 1  # DistilBERT: n_layers, by its alias
    assert encoder_layer_prefix(student) == LAYER_LISTS[arch]
    assert len(student.get_submodule(LAYER_LISTS[arch])) == 1
    # the truncated student holds the backbone's pretrained layer 0 (not a fresh one)
    prefix = LAYER_LISTS[arch] + ".0."
    s_params, t_params = dict(student.named_parameters()), dict(teacher.named_parameters())
    layer0 = [n for n in s_params if n.startswith(prefix)]
    assert layer0 and all(torch.equal(s_params[n], t_params[n]) for n in layer0)

    ids = torch.tensor([[2, 10, 11, 3, 0], [2, 12, 3, 0, 0]])
    batch = {"input_ids": ids, "attention_mask": (ids != 0).long(),
             "token_type_ids": torch.tensor([[0, 0, 0, 1, 1]] * 2), "labels": torch.tensor([0, 1])}
    keys = set(forward_inputs(student, batch))
    # DistilBERT has no segment ids; RoBERTa has one segment type (pair ids would index past it)
    expected = {"input_ids", "attention_mask"} | ({"token_type_ids"} if arch in ("bert", "electra") else set())
    assert keys == expected
    student.eval()(**forward_inputs(student, batch))


def _cfg(backbone: str, method: str, **overrides) -> DistillConfig:
    cfg = dict(method=method, task="sst2", teacher=backbone, max_train_samples=20, max_eval_samples=8,
               quiz_fraction=0.25, max_seq_length=32, epochs=1, batch_size=8, student_layers=1,
               teacher_epochs=1, teacher_batch_size=8, device="cpu", seed=0)
    if method == "pkd":  # a 1-layer student has no intermediate layer: distil layer 1 from layer 1
        cfg.update(student_layers=2, beta=10.0)
    if method == "meta-adaptive-kd":
        cfg.update(num_inner_batches=2)
    return DistillConfig(**{**cfg, **overrides})


def spy_inputs(prep, calls: list) -> None:
    """Record in ``calls``, for every forward of the run's student and teachers (functional_call
    included): (role, the inputs its signature names, the keyword arguments it got)."""
    method = prep.engine.method
    models = [("student", method.student)] + [("teacher", t) for t in method.teachers]
    for role, model in models:
        # the student's backward is differentiated again (eager: SDPA has no double backward); a
        # teacher's graph at most once (SDPA, so every method gets the same teacher outputs)
        expected = "eager" if method.second_order and role == "student" else "sdpa"
        assert model.config._attn_implementation == expected, role
        named = frozenset(inspect.signature(type(model).forward).parameters) - {"self", "kwargs"}

        def hook(module, args, kwargs, role=role, named=named):
            calls.append((role, named, set(kwargs)))

        model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("arch", [*ENCODERS, "bert"])
def test_every_method_runs_end_to_end(backbones, data_dir, arch, method):
    calls = []
    summary = run(_cfg(backbones[arch], method, data_dir=data_dir),
                  on_prepared=lambda prep: spy_inputs(prep, calls))
    # every forward got only inputs its signature names (transformers 5 DistilBERT would silently
    # swallow token_type_ids in **kwargs; transformers 4 raised a TypeError), and never labels
    roles = {role for role, _, _ in calls}
    assert roles == ({"student"} if method == "finetune" else {"student", "teacher"})
    for role, named, got in calls:
        assert got - {"output_hidden_states"} <= named - {"labels"}, (role, got)
    # the BERT tokenizer's token_type_ids reach BERT and ELECTRA, not DistilBERT (RoBERTa's BPE
    # tokenizer makes none)
    assert any("token_type_ids" in got for _, _, got in calls) == (arch in ("bert", "electra"))
    assert 0.0 <= summary["eval_accuracy"] <= 1.0
    assert summary["history"] and math.isfinite(summary["final_train_loss"])
    assert summary["student_layers"] == (2 if method == "pkd" else 1)
    if method != "finetune":
        assert summary["teacher_layers"] == 2 and summary["speedup"] > 0
        assert summary["student_params"] < summary["teacher_params"] or method == "pkd"


def test_max_seq_length_beyond_the_position_table_is_a_clear_error(backbones, data_dir):
    # tiny RoBERTa: 128 position embeddings, ids from padding_idx + 1 = 2: 126 usable positions
    with pytest.raises(UserError, match=r"max_seq_length=127 .* \(126 positions\)"):
        run(_cfg(backbones["roberta"], "finetune", data_dir=data_dir, max_seq_length=127))


# ---- one tokenizer --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def permuted_bert(tmp_path_factory) -> str:
    """A tiny BERT whose tokenizer has the MiniLM vocabulary's tokens and size, other ids."""
    root = tmp_path_factory.mktemp("permuted")
    tokenizer = make_permuted_bert_tokenizer(str(root / "vocab"))
    return make_tiny_encoder(str(root / "model"), "bert", layers=2, tokenizer=tokenizer)


def test_teachers_with_different_tokenizers_are_a_clear_error(backbones, permuted_bert, data_dir):
    a, b = backbones["bert"], permuted_bert
    cfg = _cfg(a, "kd", data_dir=data_dir, teachers=f"{a},{b}")
    with pytest.raises(UserError, match="different tokenizers") as err:
        run(cfg)
    message = str(err.value)
    assert a in message and b in message and "30522 tokens" in message  # same size, still refused


def test_a_student_source_with_another_tokenizer_is_a_clear_error(backbones, data_dir):
    cfg = _cfg(backbones["bert"], "kd", data_dir=data_dir, teacher_checkpoint=backbones["roberta"])
    with pytest.raises(UserError, match="different tokenizers") as err:
        run(cfg)
    assert backbones["roberta"] in str(err.value) and backbones["bert"] in str(err.value)


def test_teachers_sharing_a_tokenizer_pass(backbones, tmp_path, data_dir):
    a = backbones["bert"]
    b = make_tiny_bert(str(tmp_path / "other-bert"), layers=2, seed=3)  # same tokenizer, saved again
    summary = run(_cfg(a, "kd", data_dir=data_dir, teachers=f"{a},{b}"))
    assert math.isfinite(summary["final_train_loss"])
