"""Confident-learning label issues: the same flags and order as cleanlab's find_label_issues."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from cleanlab.filter import find_label_issues as cleanlab_find_label_issues

from imgclf.analysis.label_issues import class_thresholds, confident_classes, find_label_issues


def constructed_case() -> tuple[np.ndarray, np.ndarray]:
    """Class 0 is predicted at 0.9 when right, class 1 at 0.7; samples 6-8 are the interesting ones."""
    targets = np.array([0, 0, 0, 1, 1, 1, 0, 1, 0])
    probs = np.array([
        [0.9, 0.1], [0.9, 0.1], [0.9, 0.1],     # clean class 0
        [0.3, 0.7], [0.3, 0.7], [0.3, 0.7],     # clean class 1
        [0.05, 0.95],                           # labelled 0, very sure it is 1: label issue
        [0.55, 0.45],                           # labelled 1, wrong, but confident in no class: a mistake only
        [0.2, 0.8],                             # labelled 0, 0.8 >= t_1: label issue
    ])
    return targets, probs


def test_thresholds_are_mean_self_confidence() -> None:
    targets, probs = constructed_case()
    np.testing.assert_allclose(class_thresholds(targets, probs), [(0.9 * 3 + 0.05 + 0.2) / 5, (0.7 * 3 + 0.45) / 4])


def test_label_issues_on_a_constructed_case() -> None:
    targets, probs = constructed_case()
    issues = find_label_issues(targets, probs)
    assert np.flatnonzero(issues.flags).tolist() == [6, 8]
    assert issues.order.tolist() == [6, 8]            # lowest self-confidence first: 0.05 then 0.2
    assert issues.suggested.tolist() == [-1] * 6 + [1, -1, 1]
    assert issues.self_confidence[6] == pytest.approx(0.05)
    assert issues.margin[6] == pytest.approx(0.05 - 0.95)
    assert issues.confident_joint.tolist() == [[3, 2], [0, 4]]   # rows: given label; columns: confident class


def test_the_given_label_takes_part_in_the_confident_argmax() -> None:
    """A sample that reaches its own class's threshold counts there, even when another class reaches its own."""
    thresholds = np.array([0.5, 0.3, 0.9])
    probs = np.array([[0.6, 0.35, 0.05],    # 0 and 1 both reach their thresholds: the larger, 0, wins
                      [0.2, 0.7, 0.1],       # only 1
                      [0.4, 0.2, 0.4]])      # none
    assert confident_classes(probs, thresholds).tolist() == [0, 1, -1]


def test_correct_predictions_and_lone_classes_are_never_flagged() -> None:
    targets = np.array([0, 1, 1, 2])
    probs = np.array([[0.51, 0.49, 0.0], [0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.9, 0.05, 0.05]])
    issues = find_label_issues(targets, probs)
    assert not issues.flags.any()   # sample 3 is wrong but the only one labelled 2


def random_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of a model of random quality, on labels with a random share flipped."""
    rng = np.random.default_rng(seed)
    num_classes, n = int(rng.integers(2, 8)), int(rng.integers(5, 300))
    truth = rng.integers(0, num_classes, n)
    logits = rng.normal(0, 1, (n, num_classes)) * rng.uniform(0.5, 4)
    logits[np.arange(n), truth] += rng.uniform(0, 5)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    given = truth.copy()
    flip = rng.random(n) < rng.uniform(0, 0.3)
    given[flip] = rng.integers(0, num_classes, int(flip.sum()))
    if seed % 7 == 0:
        given[given == num_classes - 1] = 0   # a class that no sample is labelled with
    return given, probs


@pytest.mark.parametrize("seed", range(40))
def test_same_flags_and_order_as_cleanlab(seed: int) -> None:
    given, probs = random_case(seed)
    issues = find_label_issues(given, probs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # cleanlab warns about classes with one sample
        mask = cleanlab_find_label_issues(given, probs, n_jobs=1)
        ranked = cleanlab_find_label_issues(given, probs, n_jobs=1, return_indices_ranked_by="self_confidence")
    np.testing.assert_array_equal(issues.flags, mask)
    np.testing.assert_array_equal(issues.order, ranked)
