"""KD / PKD loss values against numbers computed by hand on fixed tensors."""

import math

import pytest
import torch

from trainables.losses import kd_loss, patient_loss, soft_loss, task_loss


def _softmax(xs):
    e = [math.exp(x) for x in xs]
    return [v / sum(e) for v in e]


def test_soft_loss_kl_matches_hand_computation():
    s = torch.tensor([[1.0, 2.0], [0.5, -0.5]], dtype=torch.float64)
    t = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    T = 2.0
    expected = 0.0
    for srow, trow in zip(s.tolist(), t.tolist()):
        ps, pt = _softmax([x / T for x in srow]), _softmax([x / T for x in trow])
        expected += sum(p * math.log(p / q) for p, q in zip(pt, ps))
    expected = expected / 2 * T**2
    assert soft_loss(s, t, T).item() == pytest.approx(expected, rel=1e-12)


def test_kd_loss_mixes_soft_and_hard_terms():
    s = torch.tensor([[1.0, 2.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 3.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([2])
    alpha, T = 0.7, 4.0
    ps, pt = _softmax([x / T for x in s[0].tolist()]), _softmax([x / T for x in t[0].tolist()])
    kl = sum(p * math.log(p / q) for p, q in zip(pt, ps)) * T**2
    ce = -math.log(_softmax(s[0].tolist())[2])
    got = kd_loss(s, t, y, alpha=alpha, temperature=T)
    assert got.item() == pytest.approx(alpha * kl + (1 - alpha) * ce, rel=1e-12)
    # explicit beta replaces (1 - alpha)
    got_b = kd_loss(s, t, y, alpha=alpha, temperature=T, beta=2.0)
    assert got_b.item() == pytest.approx(alpha * kl + 2.0 * ce, rel=1e-12)


def test_kd_loss_mse_and_regression():
    s = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 4.0]], dtype=torch.float64)
    y = torch.tensor([1])
    ce = -math.log(_softmax([1.0, 2.0])[1])
    mse = ((1 - 0) ** 2 + (2 - 4) ** 2) / 2
    assert kd_loss(s, t, y, alpha=0.5, temperature=3.0, kind="mse").item() == pytest.approx(
        0.5 * mse + 0.5 * ce, rel=1e-12)
    # regression: soft term = MSE to the teacher output, task term = MSE to the label
    s_r = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    t_r = torch.tensor([[2.0], [2.0]], dtype=torch.float64)
    y_r = torch.tensor([0.0, 5.0], dtype=torch.float64)
    soft = ((1 - 2) ** 2 + (3 - 2) ** 2) / 2
    hard = ((1 - 0) ** 2 + (3 - 5) ** 2) / 2
    got = kd_loss(s_r, t_r, y_r, alpha=0.25, temperature=9.0, regression=True)
    assert got.item() == pytest.approx(0.25 * soft + 0.75 * hard, rel=1e-12)
    assert task_loss(s_r, y_r, regression=True).item() == pytest.approx(hard)


def test_patient_loss_on_normalised_cls_vectors():
    # hidden_states tuples: [embeddings, layer1, layer2]; only position 0 ([CLS]) matters
    student = (torch.zeros(1, 2, 2), torch.tensor([[[3.0, 4.0], [9.0, 9.0]]]), torch.zeros(1, 2, 2))
    teacher = (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), torch.tensor([[[1.0, 0.0], [5.0, 5.0]]]),
               torch.tensor([[[0.0, 2.0], [1.0, 1.0]]]))
    # pair (1, 2): s = (0.6, 0.8), t = (1, 0): mse = ((0.4)^2 + 0.8^2) / 2 = 0.4
    # pair (1, 3): s = (0.6, 0.8), t = (0, 1): mse = (0.36 + 0.04) / 2 = 0.2
    got = patient_loss(student, teacher, [(1, 2), (1, 3)])
    assert got.item() == pytest.approx(0.4 + 0.2, rel=1e-6)
    assert patient_loss(student, teacher, []).item() == 0.0
