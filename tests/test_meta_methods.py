"""MetaDistil and MetaAdaptiveKD on tiny fp64 models: exact meta-gradients (against central finite
differences), pilot semantics, meta_interval, and the alpha/beta parametrisation."""

from __future__ import annotations

import copy

import pytest
import torch
from meta_helpers import (
    CaptureUpdater,
    SGDUpdater,
    central_difference,
    inputs,
    make_method,
    one_thread,  # noqa: F401 (autouse fixture)
    quiz_loss_of,
    random_batch,
    relative_error,
    sgd_copy,
    tiny_classifier,
)

from trainables import meta
from trainables.optim import Updater, adam_lookahead

INNER_LR = 0.5
# one entry (the largest analytic gradient) of each of these teacher tensors is checked
CHECKED = ("classifier.weight", "bert.pooler.dense.weight", "bert.encoder.layer.1.output.dense.bias",
           "bert.encoder.layer.0.attention.self.value.weight", "bert.embeddings.word_embeddings.weight",
           "bert.embeddings.LayerNorm.weight")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    # the teacher keeps SDPA as in a run: the meta-gradient differentiates its graph only once
    teacher = tiny_classifier(root, "teacher", seed=2, eager=False)
    assert teacher.config._attn_implementation == "sdpa"
    return tiny_classifier(root, "student", seed=1), teacher


@pytest.fixture
def fresh(models):
    student, teacher = models
    return copy.deepcopy(student), copy.deepcopy(teacher)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return random_batch(g), [random_batch(g), random_batch(g, rows=3)]


def spy_meta_gradient(method) -> dict:
    """Record the meta-gradients the method computes (they are still applied)."""
    seen = {}
    apply = method.apply_meta_gradient

    def spy(grads):
        seen["grads"] = list(grads)
        apply(grads)

    method.apply_meta_gradient = spy
    return seen


def test_metadistil_teacher_gradient_matches_finite_differences(fresh, data):
    student, teacher = fresh
    x, quiz = data
    method = make_method("metadistil", student, [teacher], teacher_opt=CaptureUpdater(teacher.parameters(), 0.0),
                         inner_lr=INNER_LR, alpha=0.6, temperature=2.0)
    student = copy.deepcopy(student)  # the method's step also updates its student (pilot update)
    method.step(x, quiz)
    grads = dict(zip([n for n, _ in teacher.named_parameters()], method.teacher_opt.grads))

    def quiz_after_inner_step():
        return quiz_loss_of(sgd_copy(student, [teacher], [x], INNER_LR, alpha=0.6), quiz)

    params = dict(teacher.named_parameters())
    for name in CHECKED:
        index = int(grads[name].abs().argmax())
        analytic = float(grads[name].view(-1)[index])
        numeric = central_difference(quiz_after_inner_step, params[name], index)
        assert abs(analytic) > 1e-8, name
        assert relative_error(analytic, numeric) <= 1e-3, (name, analytic, numeric)


@pytest.mark.parametrize("inner_batches", [1, 2])
def test_meta_adaptive_kd_gradients_match_finite_differences(fresh, data, inner_batches):
    student, teacher = fresh
    x, quiz = data
    alpha, beta = 0.7, 0.4
    method = make_method("meta-adaptive-kd", student, [teacher],
                         teacher_opt=CaptureUpdater(teacher.parameters(), 0.0), inner_lr=INNER_LR,
                         alpha=alpha, beta=beta, num_inner_batches=inner_batches, adaptive_lr=0.0)
    seen = spy_meta_gradient(method)
    student = copy.deepcopy(student)
    method.step(x, quiz)
    *teacher_grads, weight_grad = seen["grads"]
    pieces = [x] if inner_batches == 1 else [{k: v[:2] for k, v in x.items()}, {k: v[2:] for k, v in x.items()}]

    def quiz_loss(a=alpha, b=beta):
        return quiz_loss_of(sgd_copy(student, [teacher], pieces, INNER_LR, alpha=a, beta=b), quiz)

    eps = 1e-6
    d_alpha = (quiz_loss(a=alpha + eps) - quiz_loss(a=alpha - eps)) / (2 * eps)
    d_beta = (quiz_loss(b=beta + eps) - quiz_loss(b=beta - eps)) / (2 * eps)
    assert relative_error(float(weight_grad[0]), d_alpha) <= 1e-3, (weight_grad, d_alpha)
    assert relative_error(float(weight_grad[1]), d_beta) <= 1e-3, (weight_grad, d_beta)
    grads = dict(zip([n for n, _ in teacher.named_parameters()], teacher_grads))
    params = dict(teacher.named_parameters())
    for name in CHECKED[:3]:
        index = int(grads[name].abs().argmax())
        numeric = central_difference(quiz_loss, params[name], index)
        assert relative_error(float(grads[name].view(-1)[index]), numeric) <= 1e-3, name


def test_pilot_update_uses_the_teacher_after_its_meta_update(fresh, data):
    student, teacher = fresh
    x, quiz = data
    before = copy.deepcopy(teacher)
    lr = 0.05
    method = make_method("metadistil", student, [teacher], student_opt=SGDUpdater(student.parameters(), lr),
                         teacher_opt=SGDUpdater(teacher.parameters(), 50.0), inner_lr=INNER_LR, alpha=0.5)
    start = copy.deepcopy(student)
    method.step(x, quiz)
    assert not torch.equal(teacher.classifier.weight, before.classifier.weight)  # the teacher learned
    with_new = sgd_copy(start, [teacher], [x], lr, alpha=0.5)
    with_old = sgd_copy(start, [before], [x], lr, alpha=0.5)
    for (name, p), q_new, q_old in zip(student.named_parameters(), with_new.parameters(), with_old.parameters()):
        torch.testing.assert_close(p, q_new, rtol=0, atol=1e-12, msg=name)
    gap = max(float((a - b).detach().abs().max()) for a, b in zip(with_new.parameters(), with_old.parameters()))
    assert gap > 1e-6  # the check above can tell the two teachers apart
    assert gap > 1e-6  # the check above can tell the two teachers apart


def adamw(params, lr: float = 1e-3) -> Updater:
    """The engine's real student optimiser: AdamW, warm-up/decay schedule, clipping, weight decay."""
    return Updater(params, lr, total_steps=10, warmup_ratio=0.2, weight_decay=0.01, max_grad_norm=1.0)


def test_without_pilot_update_only_the_order_of_updates_changes(fresh, data):
    """pilot_update=false: the real student takes its own AdamW step on the KD loss with the *old*
    teacher (exactly what KD would do), and the teacher gets the same meta-update as with the pilot."""
    student, teacher = fresh
    x, quiz = data
    kd_student, kd_teacher = copy.deepcopy(student), copy.deepcopy(teacher)
    pilot_student, pilot_teacher = copy.deepcopy(student), copy.deepcopy(teacher)
    kd = make_method("kd", kd_student, [kd_teacher], student_opt=adamw(kd_student.parameters()), alpha=0.5)
    kd_logs = kd.step(x)
    pilot = make_method("metadistil", pilot_student, [pilot_teacher], student_opt=adamw(pilot_student.parameters()),
                        teacher_opt=SGDUpdater(pilot_teacher.parameters(), 50.0), inner_lr=INNER_LR, alpha=0.5)
    pilot.step(x, quiz)
    method = make_method("metadistil", student, [teacher], student_opt=adamw(student.parameters()),
                         teacher_opt=SGDUpdater(teacher.parameters(), 50.0), inner_lr=INNER_LR,
                         alpha=0.5, pilot_update=False)
    logs = method.step(x, quiz)
    for (name, p), q in zip(student.named_parameters(), kd_student.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12, msg=name)  # AdamW with the old teacher
    for (name, p), q in zip(teacher.named_parameters(), pilot_teacher.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12, msg=name)  # the same meta-update
    assert not torch.equal(teacher.classifier.weight, kd_teacher.classifier.weight)  # it did learn
    gap = max(float((a - b).detach().abs().max()) for a, b in zip(student.parameters(), pilot_student.parameters()))
    assert gap > 1e-9  # and the pilot's student (new teacher) differs: the check can tell them apart
    assert float(logs["loss"]) == pytest.approx(float(kd_logs["loss"]), rel=1e-12)


@pytest.mark.parametrize("name,extra", [("metadistil", {}),
                                        ("meta-adaptive-kd", {"alpha": 0.7, "beta": 0.4, "adaptive_lr": 0.0})])
def test_without_pilot_update_the_student_gets_the_kd_gradient_with_the_old_teacher(fresh, data, name, extra):
    """The real step reuses the first inner gradient: it must be exactly the gradient of the
    method's distillation loss at θ_S with the teacher before its meta-update (values, not only
    the direction, which AdamW's first step would hide)."""
    student, teacher = fresh
    x, quiz = data
    reference, old_teacher = copy.deepcopy(student), copy.deepcopy(teacher)
    method = make_method(name, student, [teacher], student_opt=CaptureUpdater(student.parameters(), 0.0),
                         teacher_opt=SGDUpdater(teacher.parameters(), 50.0), inner_lr=INNER_LR,
                         pilot_update=False, **{"alpha": 0.5, **extra})
    logs = method.step(x, quiz)
    assert not torch.equal(teacher.classifier.weight, old_teacher.classifier.weight)  # the teacher learned
    loss = method.distill_loss(reference(**inputs(x)).logits, old_teacher(**inputs(x)).logits.detach(), x)
    expected = torch.autograd.grad(loss, list(reference.parameters()), allow_unused=True)
    got = method.student_opt.grads
    assert len(got) == len(expected)
    for (name_, _), g, e in zip(reference.named_parameters(), got, expected):
        if e is None:
            assert g is None or float(g.abs().max()) == 0.0, name_
        else:
            torch.testing.assert_close(g, e, rtol=0, atol=1e-12, msg=name_)
    assert float(logs["loss"]) == pytest.approx(float(loss), rel=1e-12)


def test_meta_interval_meta_updates_every_kth_step(fresh, data):
    student, teacher = fresh
    x, quiz = data
    method = make_method("metadistil", student, [teacher], teacher_opt=SGDUpdater(teacher.parameters(), 1.0),
                         inner_lr=INNER_LR, meta_interval=3)
    changed = []
    for _ in range(6):
        before = teacher.classifier.weight.detach().clone()
        logs = method.step(x, quiz)
        changed.append(not torch.equal(before, teacher.classifier.weight))
        assert ("quiz_loss" in logs) == changed[-1]
    assert changed == [True, False, False, True, False, False]
    assert method.state_dict() == {"num_steps": 6}


def test_multi_teacher_meta_updates_every_teacher(models, data):
    student, teacher = copy.deepcopy(models[0]), copy.deepcopy(models[1])
    second = copy.deepcopy(teacher)
    with torch.no_grad():
        for p in second.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x, quiz = data
    method = make_method("metadistil", student, [teacher, second],
                         teacher_opt=CaptureUpdater([*teacher.parameters(), *second.parameters()], 0.0),
                         inner_lr=INNER_LR)
    targets = method.soft_targets(x)
    torch.testing.assert_close(targets, (teacher(**inputs(x)).logits + second(**inputs(x)).logits) / 2)
    method.step(x, quiz)
    n = len(list(teacher.parameters()))
    for grads in (method.teacher_opt.grads[:n], method.teacher_opt.grads[n:]):
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


# ---- alpha and beta -------------------------------------------------------------------------------

def test_alpha_beta_take_sgd_steps_projected_to_finite_non_negative_values(fresh):
    """Algorithm 1, lines 10-11: alpha <- alpha - adaptive_lr * grad (plain SGD), then >= 0."""
    student, teacher = fresh
    method = make_method("meta-adaptive-kd", student, [teacher], alpha=0.3, beta=0.5, adaptive_lr=0.1)
    none = [None] * len(method.teacher_opt.params)
    method.apply_meta_gradient(none + [torch.tensor([1.0, -2.0], dtype=torch.float64)])
    assert (method.alpha, method.beta) == (pytest.approx(0.2), pytest.approx(0.7))
    method.apply_meta_gradient(none + [torch.tensor([0.25, 0.0], dtype=torch.float64)])
    assert (method.alpha, method.beta) == (pytest.approx(0.175), pytest.approx(0.7))  # not Adam's lr*sign
    method.apply_meta_gradient(none + [torch.tensor([10.0, 0.0], dtype=torch.float64)])
    assert method.alpha == 0.0  # projected
    method.apply_meta_gradient(none + [torch.tensor([float("nan"), float("inf")], dtype=torch.float64)])
    assert method.alpha == 0.0 and method.beta == pytest.approx(0.7)
    assert method.state_dict()["weights"].tolist() == pytest.approx([0.0, 0.7])


def test_alpha_beta_trajectory_is_logged_every_step(fresh, data):
    student, teacher = fresh
    x, quiz = data
    method = make_method("meta-adaptive-kd", student, [teacher], alpha=0.5, inner_lr=INNER_LR,
                         adaptive_lr=0.05, meta_interval=2)
    logs = [method.step(x, quiz) for _ in range(4)]
    alphas = [log["alpha"] for log in logs]
    assert all(a >= 0 and b >= 0 for a, b in ((log["alpha"], log["beta"]) for log in logs))
    assert alphas[0] != 0.5 and alphas[1] == alphas[0] and alphas[2] != alphas[1]  # moved on meta steps
    assert alphas[3] == method.alpha


def test_meta_adaptive_kd_state_round_trip(fresh, data):
    student, teacher = fresh
    x, quiz = data
    method = make_method("meta-adaptive-kd", student, [teacher], inner_lr=INNER_LR, adaptive_lr=0.05)
    method.step(x, quiz)
    state = copy.deepcopy(method.state_dict())
    other = make_method("meta-adaptive-kd", copy.deepcopy(student), [copy.deepcopy(teacher)], adaptive_lr=0.05)
    other.load_state_dict(state)
    assert other.num_steps == 1 and (other.alpha, other.beta) == (method.alpha, method.beta)
    assert other.weights.requires_grad


# ---- inner_update=adam: S' looks ahead along the real student's AdamW step -------------------------

def warmed_up(student, teacher, x, steps: int = 2) -> Updater:
    """A real AdamW student updater with ``steps`` steps of moments behind it."""
    opt = adamw(student.parameters(), lr=1e-2)
    kd = make_method("kd", student, [teacher], student_opt=opt, alpha=0.5)
    for _ in range(steps):
        kd.step(x)
    return opt


def test_adam_lookahead_is_the_real_adamw_step(fresh, data):
    student, teacher = fresh
    x, _ = data
    opt = warmed_up(student, teacher, x)
    params = meta.trainable_params(student)
    with torch.no_grad():
        t = teacher(**inputs(x)).logits
    loss = make_method("kd", copy.deepcopy(student), [teacher], alpha=0.5).distill_loss(
        meta.logits(student, params, x), t, x)
    grads = torch.autograd.grad(loss, list(params.values()), retain_graph=True)
    ahead = adam_lookahead(opt, params)(params, grads)
    before = {n: p.detach().clone() for n, p in params.items()}
    opt.update(loss)  # the real step, from the same state
    moved = 0.0
    for name, p in student.named_parameters():
        torch.testing.assert_close(ahead[name], p, rtol=0, atol=1e-12, msg=name)
        moved = max(moved, float((p.detach() - before[name]).abs().max()))
    assert moved > 1e-4


def test_adam_inner_update_meta_gradient_matches_finite_differences(fresh, data):
    student, teacher = fresh
    x, quiz = data
    opt = warmed_up(student, teacher, x)
    teacher.requires_grad_(True)
    method = make_method("metadistil", student, [teacher], student_opt=opt,
                         teacher_opt=CaptureUpdater(teacher.parameters(), 0.0), inner_update="adam",
                         alpha=0.6, temperature=2.0)
    start, start_opt = copy.deepcopy((student, opt))  # the real step below changes them
    method.step(x, quiz)
    grads = dict(zip([n for n, _ in teacher.named_parameters()], method.teacher_opt.grads))

    def quiz_after_real_adamw_step():
        s, o = copy.deepcopy((start, start_opt))
        kd = make_method("kd", s, [teacher], student_opt=o, alpha=0.6, temperature=2.0)
        kd.step(x)
        return quiz_loss_of(s, quiz)

    params = dict(teacher.named_parameters())
    for name in CHECKED:
        index = int(grads[name].abs().argmax())
        analytic = float(grads[name].view(-1)[index])
        numeric = central_difference(quiz_after_real_adamw_step, params[name], index)
        assert abs(analytic) > 1e-10, name
        assert relative_error(analytic, numeric) < 1e-3, (name, analytic, numeric)


def test_the_removed_first_order_option_is_a_clear_error():
    from trainables.config import DistillConfig, parse_assignments
    from trainables.errors import UserError

    with pytest.raises(UserError, match="'first_order' was removed: .*exact meta-gradient"):
        DistillConfig.from_dict({"method": "metadistil", "first_order": True})
    with pytest.raises(UserError, match="--set first_order: the option was removed"):
        parse_assignments(["first_order=true"])


# ---- not only BERT --------------------------------------------------------------------------------

def test_any_encoder_distilbert_meta_gradient_and_reptile_map():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from trainables.methods.reptile_distil import parameter_map

    def distilbert(layers, seed):
        torch.manual_seed(seed)
        config = DistilBertConfig(vocab_size=3000, dim=16, n_layers=layers, n_heads=2, hidden_dim=32,
                                  max_position_embeddings=16, num_labels=2, attn_implementation="eager")
        return DistilBertForSequenceClassification(config).double().eval()

    student, teacher = distilbert(2, 0), distilbert(4, 1)
    g = torch.Generator().manual_seed(5)
    x, quiz = (({k: v for k, v in random_batch(g).items() if k != "token_type_ids"}) for _ in range(2))
    method = make_method("metadistil", student, [teacher], teacher_opt=CaptureUpdater(teacher.parameters(), 0.0),
                         inner_lr=INNER_LR, alpha=0.5)
    start = copy.deepcopy(student)
    method.step(x, [quiz])
    grads = dict(zip([n for n, _ in teacher.named_parameters()], method.teacher_opt.grads))
    params = dict(teacher.named_parameters())
    for name in ("classifier.weight", "distilbert.transformer.layer.3.ffn.lin2.weight"):
        index = int(grads[name].abs().argmax())
        numeric = central_difference(lambda: quiz_loss_of(sgd_copy(start, [teacher], [x], INNER_LR, 0.5), [quiz]),
                                     params[name], index)
        assert relative_error(float(grads[name].view(-1)[index]), numeric) <= 1e-3, name
    mapping = parameter_map(teacher, student, "skip")
    assert mapping["distilbert.transformer.layer.3.ffn.lin2.weight"] == "distilbert.transformer.layer.1.ffn.lin2.weight"
    assert mapping["pre_classifier.weight"] == "pre_classifier.weight"
    assert not any(n.startswith("distilbert.transformer.layer.0.") for n in mapping)
