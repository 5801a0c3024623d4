"""ReptileDistil: the teacher-to-student parameter map and the exact teacher moves."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from meta_helpers import (
    CaptureUpdater,
    SGDUpdater,
    make_method,
    one_thread,  # noqa: F401 (autouse fixture)
    random_batch,
    sgd_copy,
    tiny_classifier,
)
from transformers import BertConfig, BertForSequenceClassification

from trainables.errors import UserError
from trainables.methods.reptile_distil import parameter_map

LAYER = re.compile(r"bert\.encoder\.layer\.(\d+)\.(.+)")


def bert(layers: int, hidden: int = 8) -> BertForSequenceClassification:
    config = BertConfig(vocab_size=40, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=16, num_labels=2)
    return BertForSequenceClassification(config)


EXPECTED = {  # teacher depth, student depth -> strategy -> teacher layers (1-based) per student layer
    (12, 6): {"first": [1, 2, 3, 4, 5, 6], "last": [7, 8, 9, 10, 11, 12], "skip": [2, 4, 6, 8, 10, 12],
              "both": [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)]},
    (6, 3): {"first": [1, 2, 3], "last": [4, 5, 6], "skip": [2, 4, 6], "both": [(1, 2), (3, 4), (5, 6)]},
    (6, 2): {"first": [1, 2], "last": [5, 6], "skip": [3, 6], "both": [(1, 2, 3), (4, 5, 6)]},
    (4, 2): {"first": [1, 2], "last": [3, 4], "skip": [2, 4], "both": [(1, 2), (3, 4)]},
}


@pytest.mark.parametrize("depths", list(EXPECTED), ids=lambda d: f"{d[0]}to{d[1]}")
def test_parameter_map_follows_the_layer_maps(depths):
    teacher, student = bert(depths[0]), bert(depths[1])
    for strategy, layers in EXPECTED[depths].items():
        mapping = parameter_map(teacher, student, strategy)
        want = {t: j for j, ts in enumerate(layers, start=1) for t in (ts if isinstance(ts, tuple) else (ts,))}
        got: dict[int, set[int]] = {}
        for t_name, s_name in mapping.items():
            t_match, s_match = LAYER.fullmatch(t_name), LAYER.fullmatch(s_name)
            if t_match is None:  # embeddings, pooler, classifier: by identical name
                assert s_name == t_name and s_match is None
                continue
            assert t_match.group(2) == s_match.group(2)  # same sub-parameter
            got.setdefault(int(t_match.group(1)) + 1, set()).add(int(s_match.group(1)) + 1)
        assert {t: s.pop() for t, s in got.items() if len(s) == 1} == want, strategy
        per_layer = len([n for n in dict(teacher.named_parameters()) if n.startswith("bert.encoder.layer.0.")])
        assert len([n for n in mapping if LAYER.fullmatch(n)]) == per_layer * len(want)
        others = {n for n in mapping if not LAYER.fullmatch(n)}
        assert others == {n for n, _ in teacher.named_parameters() if not LAYER.fullmatch(n)}


def test_different_hidden_sizes_are_a_clear_error():
    with pytest.raises(UserError, match=r"bert\.embeddings\.word_embeddings\.weight.*\(40, 16\).*\(40, 8\)"):
        parameter_map(bert(4, hidden=16), bert(2, hidden=8), "first")
    with pytest.raises(UserError, match="multiple"):
        parameter_map(bert(5), bert(2), "first")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return tiny_classifier(root, "student", layers=2, seed=1), tiny_classifier(root, "teacher", layers=4, seed=2)


@pytest.mark.parametrize("strategy,moved", [("skip", {2, 4}), ("both", {1, 2, 3, 4}), ("last", {3, 4})])
def test_plain_step_moves_mapped_teacher_parameters_exactly(models, strategy, moved):
    student, teacher = copy.deepcopy(models[0]), copy.deepcopy(models[1])
    x = random_batch(torch.Generator().manual_seed(0))
    mu, inner_lr, lr = 0.3, 0.5, 0.05
    method = make_method("reptile-distil", student, [teacher], student_opt=SGDUpdater(student.parameters(), lr),
                         update_strategy=strategy, teacher_lr=mu, inner_lr=inner_lr, alpha=0.5)
    before, start = copy.deepcopy(teacher), copy.deepcopy(student)
    experimental = dict(sgd_copy(student, [teacher], [x], inner_lr, alpha=0.5).named_parameters())
    mapping = parameter_map(teacher, student, strategy)
    method.step(x)
    old = dict(before.named_parameters())
    for name, p in teacher.named_parameters():
        match = LAYER.fullmatch(name)
        if name in mapping:
            want = old[name] - mu * (old[name] - experimental[mapping[name]])
            torch.testing.assert_close(p, want, rtol=0, atol=1e-12, msg=name)
            assert match is None or int(match.group(1)) + 1 in moved
        else:
            assert match and int(match.group(1)) + 1 not in moved
            assert torch.equal(p, old[name]), name
    # then the real student steps with the moved teacher
    for (name, p), q in zip(student.named_parameters(), sgd_copy(start, [teacher], [x], lr, alpha=0.5).parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12, msg=name)


def test_adam_update_feeds_the_difference_as_the_teacher_gradient(models):
    student, teacher = copy.deepcopy(models[0]), copy.deepcopy(models[1])
    x = random_batch(torch.Generator().manual_seed(1))
    method = make_method("reptile-distil", student, [teacher], update_strategy="first", reptile_update="adam",
                         teacher_opt=CaptureUpdater(teacher.parameters(), 0.0), inner_lr=0.5)
    experimental = dict(sgd_copy(student, [teacher], [x], 0.5, alpha=0.5).named_parameters())
    mapping = parameter_map(teacher, student, "first")
    method.step(x)
    for (name, p), grad in zip(teacher.named_parameters(), method.teacher_opt.grads):
        if name in mapping:
            torch.testing.assert_close(grad, p - experimental[mapping[name]], rtol=0, atol=1e-12)
        else:
            assert grad is None and int(LAYER.fullmatch(name).group(1)) + 1 in (3, 4)


def test_meta_interval_leaves_the_teacher_alone_between_meta_steps(models):
    student, teacher = copy.deepcopy(models[0]), copy.deepcopy(models[1])
    x = random_batch(torch.Generator().manual_seed(2))
    method = make_method("reptile-distil", student, [teacher], teacher_lr=0.1, meta_interval=2)
    changed = []
    for _ in range(4):
        before = teacher.classifier.weight.detach().clone()
        method.step(x)
        changed.append(not torch.equal(before, teacher.classifier.weight))
    assert changed == [True, False, True, False]
