"""Classification metrics from targets and predicted probabilities, in numpy: the one definition of each.

Conventions, those of scikit-learn stated explicitly:

* zero division: precision, recall and F1 with an empty denominator are ``ZERO_DIVISION``
  (0, as ``zero_division=0``), never NaN and never a warning, so every class has a number;
* macro F1 averages over the classes present in the truth or the predictions (scikit-learn's
  ``labels=None``); a class absent from both has no F1 to average;
* ROC AUC and average precision come from scikit-learn and are undefined (``None``) when
  the labels hold only one class (AUC) or no positive (AP).

The losses are the negative log-likelihood of the probabilities, clipped at ``MIN_PROB``:
:func:`per_sample_loss` for one class per image (softmax, and ``sigmoid1`` as ``[1 - p, p]``),
:func:`multilabel_sample_loss` (binary cross-entropy) for multi-label runs. Training logs
``val_loss`` with these same functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_PROB = 1e-12  # probabilities are clipped here before log: the largest loss is -log(1e-12) = 27.6
ZERO_DIVISION = 0.0  # the value of a ratio with an empty denominator (scikit-learn's zero_division=0)


def lower_is_better(metric: str) -> bool:
    """Whether a logged metric is minimised: losses go down; accuracy, F1, mAP and the rest go up."""
    return "loss" in metric


def safe_divide(numerator: Any, denominator: Any, zero_division: float = ZERO_DIVISION) -> np.ndarray:
    """numerator / denominator as float64, ``zero_division`` where the denominator is 0."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, zero_division, dtype=np.float64)
    return np.divide(num, den, out=out, where=den != 0)


def predictions(probs: np.ndarray) -> np.ndarray:
    """(N,) predicted class indices of (N, K) probabilities (lowest index wins ties)."""
    return np.asarray(probs).argmax(axis=1)


def true_probs(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(N,) probability given to each sample's true class."""
    probs = np.asarray(probs)
    return probs[np.arange(len(probs)), np.asarray(targets, dtype=np.int64)]


def accuracy(targets: np.ndarray, probs: np.ndarray) -> float:
    """Fraction of samples whose top class is the target (0 for an empty set)."""
    targets = np.asarray(targets)
    return float(safe_divide(np.sum(predictions(probs) == targets), len(targets)))


def per_sample_loss(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(N,) cross-entropy -log p_true, float64, with p clipped at MIN_PROB."""
    return -np.log(np.clip(true_probs(targets, probs).astype(np.float64), MIN_PROB, 1.0))


def mean_loss(targets: np.ndarray, probs: np.ndarray) -> float:
    losses = per_sample_loss(targets, probs)
    return float(losses.mean()) if len(losses) else 0.0


def confusion_matrix(targets: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts; rows are true classes, columns predicted classes."""
    codes = np.asarray(targets, dtype=np.int64) * num_classes + np.asarray(preds, dtype=np.int64)
    return np.bincount(codes, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class PerClass:
    """Per-class (or per-label) precision, recall, F1 and support, each shaped (K,)."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray

    def rows(self, names: Sequence[str]) -> list[list[Any]]:
        """[name, precision, recall, f1, support] per class, ready for a table or CSV."""
        return [[name, float(p), float(r), float(f), int(s)]
                for name, p, r, f, s in zip(names, self.precision, self.recall, self.f1, self.support)]


def _prf(true_pos: np.ndarray, pred_pos: np.ndarray, actual_pos: np.ndarray) -> PerClass:
    precision = safe_divide(true_pos, pred_pos)
    recall = safe_divide(true_pos, actual_pos)
    f1 = safe_divide(2 * precision * recall, precision + recall)
    return PerClass(precision, recall, f1, np.asarray(actual_pos, dtype=np.int64))


def per_class_metrics(confusion: np.ndarray) -> PerClass:
    """Precision, recall, F1 and support of each class from a confusion matrix."""
    confusion = np.asarray(confusion)
    return _prf(np.diag(confusion), confusion.sum(axis=0), confusion.sum(axis=1))


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean F1 over the classes present in the truth or the predictions (scikit-learn's convention)."""
    confusion = np.asarray(confusion)
    present = (confusion.sum(axis=0) + confusion.sum(axis=1)) > 0
    f1 = per_class_metrics(confusion).f1[present]
    return float(f1.mean()) if f1.size else ZERO_DIVISION


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve of binary labels and positive-class scores; None when one class is absent."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return None
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def classification_summary(targets: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Every single-label metric as a JSON-ready dict (ROC AUC only for two classes, None when undefined)."""
    confusion = confusion_matrix(targets, predictions(probs), len(classes))
    per_class = per_class_metrics(confusion)
    summary: dict[str, Any] = {
        "num_images": int(len(targets)),
        "accuracy": accuracy(targets, probs),
        "loss": mean_loss(targets, probs),
        "macro_f1": macro_f1(confusion),
        "per_class": [dict(zip(("class", "precision", "recall", "f1", "support"), row))
                      for row in per_class.rows(classes)],
        "confusion_matrix": confusion.tolist(),
    }
    if len(classes) == 2:
        summary["roc_auc"] = roc_auc(np.asarray(targets) == 1, np.asarray(probs)[:, 1])
        if summary["roc_auc"] is None:
            summary["roc_auc_note"] = "undefined: the labels hold only one class"
    return summary


# --- multi-label: targets and probabilities are both (N, K), targets 0/1 ----------------------

def multilabel_metrics(targets: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> PerClass:
    """Per-label precision, recall, F1 and support with label predicted when p >= threshold."""
    actual = np.asarray(targets).astype(bool)
    predicted = np.asarray(probs) >= threshold
    return _prf((actual & predicted).sum(axis=0), predicted.sum(axis=0), actual.sum(axis=0))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """scikit-learn's average precision of binary labels and scores; None without a positive (undefined)."""
    from sklearn.metrics import average_precision_score

    labels = np.asarray(labels).astype(bool)
    if not labels.any():
        return None
    return float(average_precision_score(labels, np.asarray(scores, dtype=np.float64)))


def mean_average_precision(targets: np.ndarray, probs: np.ndarray) -> float:
    """Mean AP over the labels with at least one positive (AP is undefined for the others); NaN if none has."""
    targets, probs = np.asarray(targets), np.asarray(probs)
    values = [average_precision(targets[:, k], probs[:, k]) for k in range(targets.shape[1])]
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else math.nan


def exact_match_ratio(targets: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of samples whose whole predicted label set equals the true one."""
    actual = np.asarray(targets).astype(bool)
    matches = np.all(actual == (np.asarray(probs) >= threshold), axis=1)
    return float(matches.mean()) if len(matches) else 0.0


def multilabel_sample_loss(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(N,) binary cross-entropy of each sample, mean over its labels, with p clipped to [MIN_PROB, 1 - MIN_PROB]."""
    actual = np.asarray(targets).astype(bool)
    p = np.clip(np.asarray(probs, dtype=np.float64), MIN_PROB, 1.0 - MIN_PROB)
    return -np.where(actual, np.log(p), np.log1p(-p)).mean(axis=1)


def multilabel_scores(probs: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """{val_loss, val_acc, val_map, val_exact_match, val_f1} of (N, K) sigmoid probs and 0/1 targets.

    ``val_acc`` of a multi-label run is the per-label accuracy (mean over images and labels of a
    correct yes/no decision at the threshold), so checkpoint selection and the training table
    work unchanged; the other metrics are logged beside it.
    """
    t, p = np.asarray(targets), np.asarray(probs)
    if not len(t):
        return {"val_loss": 0.0, "val_acc": 0.0, "val_map": math.nan, "val_exact_match": 0.0, "val_f1": 0.0}
    decided = (p >= threshold) == t.astype(bool)
    return {"val_loss": float(multilabel_sample_loss(t, p).mean()), "val_acc": float(decided.mean()),
            "val_map": mean_average_precision(t, p), "val_exact_match": exact_match_ratio(t, p, threshold),
            "val_f1": float(np.mean(multilabel_metrics(t, p, threshold).f1))}
