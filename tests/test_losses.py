"""Losses against hand computation: cross-entropy, label smoothing, BCE, multi-label, distillation."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from imgclf.training.distill import DistillationLoss, kd_divergence
from imgclf.models.outputs import logits_to_probs, num_model_outputs
from imgclf.training.losses import create_loss, output_kind, smooth_targets

LOGITS = torch.tensor([[0.6614, 0.2669, 0.0617], [0.6213, -0.4519, -0.1661]])
TARGETS = torch.tensor([0, 2])


def hand_ce(logits: torch.Tensor, targets: torch.Tensor) -> float:
    total = 0.0
    for row, t in zip(logits.tolist(), targets.tolist()):
        total += -row[t] + math.log(sum(math.exp(v) for v in row))
    return total / len(targets)


def test_cross_entropy_of_the_handbook_example_is_1_0862() -> None:
    loss = create_loss("ce", label_smoothing=0.0)(LOGITS, TARGETS)
    assert float(loss) == pytest.approx(1.0862, abs=1e-4)
    assert float(loss) == pytest.approx(hand_ce(LOGITS, TARGETS), abs=1e-6)


def test_smoothed_targets_are_0_925_and_0_025() -> None:
    soft = smooth_targets(torch.tensor([0, 2]), 4, 0.1)
    expected = torch.tensor([[0.925, 0.025, 0.025, 0.025], [0.025, 0.025, 0.925, 0.025]])
    assert torch.allclose(soft, expected)
    assert soft.sum(1).tolist() == pytest.approx([1.0, 1.0])


def test_smoothed_cross_entropy_equals_torch_and_the_hand_formula() -> None:
    loss = create_loss("ce", label_smoothing=0.1)(LOGITS, TARGETS)
    soft = smooth_targets(TARGETS, 3, 0.1)
    by_hand = float(-(soft * LOGITS.log_softmax(1)).sum(1).mean())
    assert float(loss) == pytest.approx(by_hand, abs=1e-6)
    assert float(loss) == pytest.approx(float(F.cross_entropy(LOGITS, TARGETS, label_smoothing=0.1)), abs=1e-6)


def test_class_weighted_cross_entropy_equals_torch() -> None:
    weights = torch.tensor([2.0, 1.0, 0.5])
    ours = create_loss("ce", 0.0, weights)(LOGITS, TARGETS)
    assert float(ours) == pytest.approx(float(F.cross_entropy(LOGITS, TARGETS, weight=weights)), abs=1e-6)


def test_bce_single_logit_and_its_probabilities() -> None:
    logits = torch.tensor([[0.3], [-1.2]])
    targets = torch.tensor([1, 0])
    loss = create_loss("bce")(logits, targets)
    p = torch.sigmoid(logits.view(-1))
    by_hand = -(math.log(p[0]) + math.log(1 - p[1])) / 2
    assert float(loss) == pytest.approx(by_hand, abs=1e-6)
    probs = logits_to_probs(logits, output_kind("bce"))
    assert probs.shape == (2, 2) and probs.sum(1).tolist() == pytest.approx([1.0, 1.0])
    assert probs[:, 1].tolist() == pytest.approx(p.tolist())
    assert num_model_outputs("sigmoid1", 2) == 1 and num_model_outputs("softmax", 2) == 2


def test_multilabel_loss_is_mean_bce_over_labels() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.sigmoid(logits)
    by_hand = float(-(targets * p.log() + (1 - targets) * (1 - p).log()).mean())
    assert float(create_loss("multilabel")(logits, targets)) == pytest.approx(by_hand, abs=1e-6)
    assert torch.allclose(logits_to_probs(logits, "multilabel"), p)
    assert torch.allclose(logits_to_probs(logits), torch.softmax(logits, 1))


def test_distillation_with_t1_alpha1_is_the_kl_divergence_by_hand() -> None:
    student = LOGITS
    teacher = torch.tensor([[1.0, 0.0, -1.0], [0.2, 0.1, 0.9]])
    kl = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        zs = sum(math.exp(v) for v in s_row)
        zt = sum(math.exp(v) for v in t_row)
        for s, t in zip(s_row, t_row):
            pt, ps = math.exp(t) / zt, math.exp(s) / zs
            kl += pt * math.log(pt / ps)
    kl /= 2
    loss = DistillationLoss(create_loss("ce"), temperature=1.0, alpha=1.0)(student, TARGETS, teacher)
    assert float(loss) == pytest.approx(kl, abs=1e-6)


def test_distillation_mixes_t_squared_kl_with_the_hard_loss() -> None:
    teacher = torch.tensor([[1.0, 0.0, -1.0], [0.2, 0.1, 0.9]])
    hard = create_loss("ce")
    loss = DistillationLoss(hard, temperature=3.0, alpha=0.7)(LOGITS, TARGETS, teacher)
    expected = 0.7 * 9.0 * float(kd_divergence(LOGITS, teacher, 3.0)) + 0.3 * float(hard(LOGITS, TARGETS))
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    assert float(kd_divergence(LOGITS, LOGITS, 2.0)) == pytest.approx(0.0, abs=1e-7)
