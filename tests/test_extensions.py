"""Seed-002 extensions: multi-teacher soft targets, noise injection, student warm-up."""

from __future__ import annotations

import copy

import pytest
import torch
from meta_helpers import (
    TASK,
    SGDUpdater,
    make_method,
    one_thread,  # noqa: F401 (autouse fixture)
    random_batch,
    sgd_copy,
    tiny_classifier,
)

from trainables.augment import NoiseInjector
from trainables.config import DistillConfig
from trainables.engine import Engine, Loaders
from trainables.methods import get_method
from trainables.models import load_tokenizer, packaged_minilm_path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return (tiny_classifier(root, "student", seed=1), tiny_classifier(root, "teacher_a", seed=2),
            tiny_classifier(root, "teacher_b", seed=3))


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(packaged_minilm_path())


@pytest.mark.parametrize("name", ["kd", "metadistil", "meta-adaptive-kd"])
def test_multi_teacher_soft_targets_are_the_mean_of_the_teachers_logits(models, name):
    student, a, b = (copy.deepcopy(m) for m in models)
    x = random_batch(torch.Generator().manual_seed(0))
    method = make_method(name, student, [a, b], student_opt=SGDUpdater(student.parameters(), 0.1),
                         alpha=0.5, beta=0.5)
    with torch.no_grad():
        targets = method.mean_logits(method.teacher_outputs(x))
        inputs = {k: v for k, v in x.items() if k != "labels"}
        torch.testing.assert_close(targets, (a(**inputs).logits + b(**inputs).logits) / 2)
    if name == "kd":  # the student's step distils from exactly that mean
        start = copy.deepcopy(student)
        method.step(x)
        for p, q in zip(student.parameters(), sgd_copy(start, [a, b], [x], 0.1, alpha=0.5).parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


def sentences_batch(tokenizer, rows: int = 200):
    words = ["the", "film", "is", "a", "charming", "and", "often", "affecting", "journey", "of", "quiet"]
    texts = [" ".join(words[: 3 + i % len(words)]) for i in range(rows)]
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


@pytest.mark.parametrize("token", ["mask", "unk", "random"])
def test_noise_replaces_about_p_of_the_eligible_tokens_and_never_special_ones(tokenizer, token):
    batch = sentences_batch(tokenizer)
    ids = batch["input_ids"]
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    eligible = ~special & batch["attention_mask"].bool()
    noisy = NoiseInjector(tokenizer, 0.3, token, seed=0)(batch)["input_ids"]
    changed = noisy != ids
    assert torch.equal(noisy[~eligible], ids[~eligible])  # [CLS], [SEP], padding untouched
    rate = changed[eligible].float().mean().item()
    assert 0.3 - 0.04 < rate < 0.3 + 0.04, rate  # ~1,300 eligible tokens
    replaced = noisy[changed]
    if token == "random":
        assert not torch.isin(replaced, torch.tensor(tokenizer.all_special_ids)).any()
    else:
        expected = tokenizer.mask_token_id if token == "mask" else tokenizer.unk_token_id
        assert (replaced == expected).all()
    assert torch.equal(NoiseInjector(tokenizer, 0.0, token)(batch)["input_ids"], ids)
    all_noise = NoiseInjector(tokenizer, 1.0, token)(batch)["input_ids"]
    assert torch.equal(all_noise[~eligible], ids[~eligible])
    assert (all_noise != ids)[eligible].float().mean() > 0.99


def test_warmup_uses_no_teacher_and_noise_reaches_teacher_and_student(models, tokenizer):
    student, teacher, _ = (copy.deepcopy(m) for m in models)
    g = torch.Generator().manual_seed(4)
    train, quiz = [random_batch(g) for _ in range(3)], [random_batch(g) for _ in range(2)]
    cfg = DistillConfig(method="metadistil", warmup_epochs=1, epochs=1, device="cpu", noise_prob=0.5,
                        student_lr=1e-3, lr_warmup_ratio=0.0)
    method = get_method("metadistil")(cfg, TASK, student, [teacher])
    engine = Engine(cfg, TASK, method, Loaders(train=train, dev=train[:1], quiz=quiz), torch.device("cpu"),
                    augment=NoiseInjector(tokenizer, 0.5, "mask", seed=0))
    seen = {"teacher": [], "student": []}
    for who, model in (("teacher", teacher), ("student", student)):
        model.register_forward_pre_hook(
            lambda m, args, kwargs, who=who: seen[who].append((engine.step, kwargs["input_ids"].clone())),
            with_kwargs=True)
    start = copy.deepcopy(student)
    engine.fit()
    assert engine.step == 6
    assert {step for step, _ in seen["teacher"]} == {3, 4, 5}  # no teacher in the warm-up epoch
    warm = [step for step, _ in seen["student"] if step < 3]
    assert sorted(set(warm)) == [0, 1, 2]
    assert any(not torch.equal(p, q) for p, q in zip(student.parameters(), start.parameters()))
    mask_id = tokenizer.mask_token_id
    train_ids = {step: ids for step, ids in seen["teacher"] if ids.shape == train[0]["input_ids"].shape}
    for step, ids in seen["student"]:
        if step >= 3 and step in train_ids and torch.equal(ids, train_ids[step]):
            break
    else:
        pytest.fail("the student never saw the teacher's (noisy) batch")
    assert all((ids == mask_id).any() for _, ids in seen["teacher"])  # the teacher sees noise too
