"""Likely label errors by confident learning (Northcutt, Jiang and Chuang, JAIR 2021).

This is cleanlab's default rule, ``cleanlab.filter.find_label_issues(labels, pred_probs)`` with
``filter_by="prune_by_noise_rate"``, ``frac_noise=1``, ``min_examples_per_class=1``, reproduced
step by step so that it flags exactly the same samples on the same probabilities (a test compares
the two):

1. per-class thresholds t_j = mean p_j over the samples labelled j (mean self-confidence);
2. the confident joint C[i][j]: samples labelled i whose confident class is j. The confident
   class is the class whose probability reaches its threshold (the most probable one when
   several do), *the given label included*: a sample confidently in its own class counts on
   the diagonal. Samples confident in no class are not counted;
3. C calibrated so that its rows sum to the label counts and its total to N;
4. for every off-diagonal cell (i, j), the C[i][j] samples labelled i with the largest margin
   p_j - p_i are flagged;
5. a flagged sample whose given label is (within 1e-6) the most probable class is unflagged.

Flagged samples are ranked by self-confidence p_given, lowest first (cleanlab's
``return_indices_ranked_by="self_confidence"``); the suggested label is the most probable class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-6                    # cleanlab's FLOATING_POINT_COMPARISON
MIN_THRESHOLD = 2 * EPS       # cleanlab's CONFIDENT_THRESHOLDS_LOWER_BOUND
ABSENT_THRESHOLD = 2.0        # a class nobody is labelled with: no probability reaches it
TINY = 1e-100
RULE = "confident learning, cleanlab find_label_issues(filter_by='prune_by_noise_rate')"


@dataclass(frozen=True)
class LabelIssues:
    """``flags`` (N,) bool; ``suggested`` (N,) class (-1 where not flagged); ``order``: flagged, worst first."""

    flags: np.ndarray
    suggested: np.ndarray
    self_confidence: np.ndarray     # (N,) p of the given label
    margin: np.ndarray              # (N,) p_given - max p of another class (cleanlab's normalized margin, unscaled)
    order: np.ndarray               # indices of the flagged samples, lowest self-confidence first
    thresholds: np.ndarray          # (K,) per-class thresholds t_j
    confident_joint: np.ndarray     # (K, K) calibrated counts: row = given label, column = confident class


def class_thresholds(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(K,) t_j = mean p_j over the samples labelled j (at least 2e-6); 2 for a class with none."""
    targets, probs = np.asarray(targets), np.asarray(probs, dtype=np.float64)
    num_classes = probs.shape[1]
    counts = np.bincount(targets, minlength=num_classes)
    sums = np.zeros(num_classes)
    np.add.at(sums, targets, probs[np.arange(len(targets)), targets])
    means = np.where(counts > 0, sums / np.maximum(counts, 1), ABSENT_THRESHOLD)
    return np.maximum(means, MIN_THRESHOLD)


def confident_classes(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(N,) the class each sample is confidently in (given label included), -1 if none."""
    above = probs >= thresholds[None, :] - EPS
    count = above.sum(axis=1)
    guess = np.where(count > 1, probs.argmax(axis=1), above.argmax(axis=1))
    return np.where(count > 0, guess, -1)


def round_preserving_sum(values: np.ndarray) -> np.ndarray:
    """Integers summing to round(sum(values)): the entries furthest from their rounding move first."""
    floats = np.asarray(values, dtype=float)
    ints = floats.round()
    target = np.sum(floats).round()
    total = np.sum(ints).round()
    while abs(total - target) > EPS:
        diff = np.round(target - total)
        step = -1 if diff < 0 else 1
        changes = min(int(abs(diff)), len(floats))
        for i in np.argsort(floats - ints)[::-step][:changes]:
            ints[i] += step
        total = np.sum(ints).round()
    return ints.astype(int)


def round_rows(matrix: np.ndarray) -> np.ndarray:
    return np.stack([round_preserving_sum(row) for row in matrix]).astype(int)


def confident_joint(targets: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(K, K) calibrated confident joint: C[i][j] ~ how many samples labelled i truly are j."""
    num_classes = probs.shape[1]
    confident = confident_classes(probs, thresholds)
    counted = confident >= 0
    by_class = np.zeros((num_classes, num_classes), dtype=np.int64)   # [confident][given]
    np.add.at(by_class, (confident[counted], targets[counted]), 1)
    joint = by_class.T   # a transposed view, as cleanlab's: the float sums below then round identically
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    label_counts = np.bincount(targets, minlength=num_classes)
    calibrated = (joint.T / np.clip(joint.sum(axis=1), TINY, None) * label_counts).T
    calibrated = calibrated / np.clip(calibrated.sum(), TINY, None) * label_counts.sum()
    return round_rows(calibrated)


def prune_counts(joint: np.ndarray) -> np.ndarray:
    """(K, K) how many to flag per (true j, given i), transposed: [j][i]; every class keeps one sample."""
    counts = joint.T.astype(float)
    diagonal = counts.diagonal()
    raised = np.maximum(diagonal, 1)
    per_col = np.maximum(np.count_nonzero(counts, axis=0) - 1.0, 1.0)
    out = counts - (raised - diagonal) / per_col
    out[out < 0] = 0
    np.fill_diagonal(out, raised)
    return out.astype(int)   # truncated, as cleanlab does


def prune_by_noise_rate(targets: np.ndarray, probs: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """(N,) bool: per given class i and other class j, the samples with the largest p_j - p_i."""
    flags = np.zeros(len(targets), dtype=bool)
    counts = prune_counts(joint)
    for given in range(probs.shape[1]):
        members = np.flatnonzero(targets == given)
        if len(members) <= 1:
            continue
        mask = np.zeros(len(members), dtype=bool)
        class_probs = probs[members]
        for other in range(probs.shape[1]):
            num = counts[other, given]
            if other != given and num > 0:
                margin = class_probs[:, other] - class_probs[:, given]
                mask[np.argsort(-margin)[:num]] = True
        flags[members] = mask
    return flags


def find_label_issues(targets: np.ndarray, probs: np.ndarray) -> LabelIssues:
    """Flag likely label errors in (N,) given labels against (N, K) out-of-sample probabilities."""
    targets = np.asarray(targets, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    rows = np.arange(len(targets))
    thresholds = class_thresholds(targets, probs)
    joint = confident_joint(targets, probs, thresholds)
    flags = prune_by_noise_rate(targets, probs, joint)
    nudged = probs.copy()
    nudged[rows, targets] += EPS
    flags &= nudged.argmax(axis=1) != targets
    self_confidence = probs[rows, targets]
    others = probs.copy()
    others[rows, targets] = -np.inf
    margin = self_confidence - others.max(axis=1) if probs.shape[1] > 1 else np.ones(len(targets))
    suggested = np.where(flags, probs.argmax(axis=1), -1)
    flagged = np.flatnonzero(flags)
    order = flagged[np.argsort(self_confidence[flagged], kind="stable")]
    return LabelIssues(flags, suggested, self_confidence, margin, order, thresholds, joint)
