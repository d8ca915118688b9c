"""Initialisation, class balance, early stopping and multi-label metrics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from imgclf.data.balance import balanced_order, class_weights, positive_weights
from imgclf.data.stats import imbalance_warning
from imgclf.data.multilabel import multi_hot
from imgclf.analysis.metrics import multilabel_scores
from imgclf.training.stopping import EarlyStopping
from imgclf.models.init import INITIALIZERS, init_weights


@pytest.mark.parametrize("name", [n for n in INITIALIZERS if n != "default"])
def test_init_sets_the_expected_spread_and_zero_biases(name: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(64, 128, 3), nn.ReLU(), nn.Flatten(), nn.Linear(512, 256))
    init_weights(model, name)
    lin = model[3]
    fan_in, fan_out = 512, 256
    expected_std = {"kaiming_uniform": math.sqrt(2 / fan_in), "kaiming_normal": math.sqrt(2 / fan_out),
                    "xavier_uniform": math.sqrt(2 / (fan_in + fan_out)),
                    "xavier_normal": math.sqrt(2 / (fan_in + fan_out))}[name]
    assert float(lin.weight.detach().std()) == pytest.approx(expected_std, rel=0.05)
    assert float(lin.bias.detach().abs().max()) == 0.0 and float(model[0].bias.detach().abs().max()) == 0.0
    uniform = name.endswith("uniform")
    bound = expected_std * math.sqrt(3)
    assert (float(lin.weight.detach().abs().max()) <= bound + 1e-6) == uniform


def test_default_init_leaves_the_layers_alone() -> None:
    model = nn.Linear(4, 2)
    before = model.weight.detach().clone()
    init_weights(model, "default")
    assert torch.equal(model.weight, before)


def test_class_weights_are_n_over_k_n_c() -> None:
    weights = class_weights(torch.tensor([30.0, 10.0, 20.0]))
    assert weights.tolist() == pytest.approx([60 / 90, 60 / 30, 60 / 60])
    assert positive_weights(torch.tensor([1.0, 3.0, 0.0]), 4).tolist() == pytest.approx([3.0, 1 / 3, 1.0])


def test_balanced_order_is_seeded_per_epoch_and_balances_classes() -> None:
    targets = torch.tensor([0] * 90 + [1] * 10)
    a, b = balanced_order(targets, 0, 3), balanced_order(targets, 0, 3)
    assert torch.equal(a, b) and not torch.equal(a, balanced_order(targets, 0, 4))
    drawn = torch.cat([targets[balanced_order(targets, 0, e)] for e in range(40)])
    assert float(drawn.float().mean()) == pytest.approx(0.5, abs=0.03)


def test_imbalance_warning_over_three_times() -> None:
    assert imbalance_warning({"a": 30, "b": 10}) is None
    message = imbalance_warning({"a": 31, "b": 10, "c": 12})
    assert message and "'a' has 31" in message and "'b' only 10" in message and "--balance" in message


def test_early_stopping_counts_evaluations_without_improvement() -> None:
    stop = EarlyStopping("val_loss", patience=2)
    assert [stop.update({"val_loss": v}) for v in (1.0, 0.8, 0.9, 0.85)] == [False, False, False, True]
    acc = EarlyStopping("val_acc", patience=1)
    assert [acc.update({"val_acc": v}) for v in (0.5, 0.6, 0.6)] == [False, False, True]
    restored = EarlyStopping("val_acc", patience=1)
    restored.load_state_dict(acc.state_dict())
    assert restored.best == 0.6 and restored.bad_evals == 1
    assert not EarlyStopping("val_map", patience=0).update({"val_map": 0.1})


def test_multilabel_scores_by_hand() -> None:
    targets = multi_hot([("blue", "circle"), ("red",), ("circle", "red")], ["blue", "circle", "red"])
    assert targets.tolist() == [[1, 1, 0], [0, 0, 1], [0, 1, 1]]
    probs = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.6, 0.7], [0.1, 0.9, 0.4]])
    scores = multilabel_scores(probs, targets, threshold=0.5)
    assert scores["val_acc"] == pytest.approx(7 / 9)
    assert scores["val_exact_match"] == pytest.approx(1 / 3)
    p = probs.double()
    bce = float(-(targets * p.log() + (1 - targets) * (1 - p).log()).mean())
    assert scores["val_loss"] == pytest.approx(bce)
    assert 0 < scores["val_map"] <= 1
