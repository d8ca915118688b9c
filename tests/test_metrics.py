"""Metrics against hand computations and scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from imgclf.analysis import metrics as M

TARGETS = np.array([0, 0, 1, 1, 2, 2])
PROBS = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1],
                  [0.2, 0.3, 0.5], [0.1, 0.1, 0.8], [0.5, 0.25, 0.25]])


def test_accuracy_loss_and_confusion_by_hand() -> None:
    assert M.accuracy(TARGETS, PROBS) == pytest.approx(3 / 6)
    expected_losses = -np.log([0.7, 0.3, 0.8, 0.3, 0.8, 0.25])
    np.testing.assert_allclose(M.per_sample_loss(TARGETS, PROBS), expected_losses)
    assert M.mean_loss(TARGETS, PROBS) == pytest.approx(expected_losses.mean())
    confusion = M.confusion_matrix(TARGETS, M.predictions(PROBS), 3)
    np.testing.assert_array_equal(confusion, [[1, 1, 0], [0, 1, 1], [1, 0, 1]])


def test_loss_of_a_zero_probability_is_finite() -> None:
    loss = M.per_sample_loss(np.array([1]), np.array([[1.0, 0.0]]))
    assert np.isfinite(loss).all() and loss[0] == pytest.approx(-np.log(M.MIN_PROB))


def test_per_class_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, 200)
    probs = rng.dirichlet(np.ones(4), 200)
    preds = M.predictions(probs)
    per_class = M.per_class_metrics(M.confusion_matrix(targets, preds, 4))
    p, r, f, s = skm.precision_recall_fscore_support(targets, preds, labels=range(4), zero_division=0)
    np.testing.assert_allclose(per_class.precision, p)
    np.testing.assert_allclose(per_class.recall, r)
    np.testing.assert_allclose(per_class.f1, f)
    np.testing.assert_array_equal(per_class.support, s)
    assert M.macro_f1(M.confusion_matrix(targets, preds, 4)) == pytest.approx(
        skm.f1_score(targets, preds, average="macro"))


def test_absent_and_never_predicted_classes_give_zero_without_warnings() -> None:
    confusion = M.confusion_matrix(np.array([0, 0, 1]), np.array([0, 0, 0]), 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        per_class = M.per_class_metrics(confusion)
        auc = M.roc_auc(np.array([0, 0]), np.array([0.2, 0.9]))
    np.testing.assert_array_equal(per_class.precision, [2 / 3, 0, 0])
    np.testing.assert_array_equal(per_class.f1[1:], [0, 0])
    assert not np.isnan(per_class.f1).any() and auc is None


def test_roc_auc_is_undefined_with_one_class_and_says_so() -> None:
    summary = M.classification_summary(np.array([1, 1]), np.array([[0.3, 0.7], [0.6, 0.4]]), ["a", "b"])
    assert summary["roc_auc"] is None and "one class" in summary["roc_auc_note"]
    assert M.average_precision(np.array([0, 0]), np.array([0.9, 0.8])) is None
    assert np.isnan(M.mean_average_precision(np.zeros((3, 2)), np.full((3, 2), 0.5)))


def test_macro_f1_follows_scikit_learn_labels_convention() -> None:
    """A class absent from both truth and predictions is not averaged (scikit-learn's labels=None)."""
    targets, preds = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    confusion = M.confusion_matrix(targets, preds, 3)   # class 2: never present, never predicted
    assert M.macro_f1(confusion) == pytest.approx(skm.f1_score(targets, preds, average="macro", zero_division=0))
    one_missed = M.confusion_matrix(np.array([0, 2]), np.array([0, 0]), 3)   # class 2 present, never predicted
    assert M.macro_f1(one_missed) == pytest.approx(
        skm.f1_score([0, 2], [0, 0], average="macro", zero_division=0))


@pytest.mark.parametrize("seed", [0, 1])
def test_roc_auc_matches_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) * 0.6 + labels * 0.3, 2)  # rounded: ties on purpose
    assert M.roc_auc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores))


def test_roc_auc_by_hand() -> None:
    # positives scored 0.9, 0.4; negatives 0.5, 0.1: 3 of the 4 pairs ordered right
    assert M.roc_auc(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.5, 0.1])) == pytest.approx(0.75)


def test_classification_summary_has_auc_for_two_classes_only() -> None:
    two = M.classification_summary(np.array([0, 1, 1]), np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]), ["a", "b"])
    assert two["roc_auc"] == pytest.approx(1.0) and two["accuracy"] == pytest.approx(2 / 3)
    assert two["per_class"][1] == {"class": "b", "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3),
                                   "support": 2}
    assert "roc_auc" not in M.classification_summary(TARGETS, PROBS, ["a", "b", "c"])


def test_multilabel_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    targets = rng.integers(0, 2, (100, 5))
    targets[0] = 1  # every label has a positive
    probs = np.clip(targets * 0.4 + rng.random((100, 5)) * 0.6, 0, 1)
    per_label = M.multilabel_metrics(targets, probs, threshold=0.5)
    p, r, f, s = skm.precision_recall_fscore_support(targets, probs >= 0.5, zero_division=0)
    np.testing.assert_allclose([per_label.precision, per_label.recall, per_label.f1], [p, r, f])
    np.testing.assert_array_equal(per_label.support, s)
    assert M.mean_average_precision(targets, probs) == pytest.approx(
        skm.average_precision_score(targets, probs, average="macro"))
    assert M.exact_match_ratio(targets, probs) == pytest.approx(skm.accuracy_score(targets, probs >= 0.5))


def test_average_precision_by_hand() -> None:
    # ranking: pos, neg, pos -> precision at the recalls 0.5 and 1.0 is 1 and 2/3
    assert M.average_precision(np.array([1, 0, 1]), np.array([0.9, 0.8, 0.7])) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert M.average_precision(np.array([0, 0]), np.array([0.9, 0.8])) is None
