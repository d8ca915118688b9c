"""Classification metrics from integer targets and predicted probabilities, in numpy.

Every ratio with an empty denominator is 0 (never NaN, never a warning), so a class that
was never predicted or never present still gets a number that can go into a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

MIN_PROB = 1e-12  # probabilities are clipped here before log: the largest loss is -log(1e-12) = 27.6


def safe_divide(numerator: Any, denominator: Any) -> np.ndarray:
    """numerator / denominator as float64, 0 where the denominator is 0."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
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
    """Unweighted mean F1 over the classes."""
    f1 = per_class_metrics(confusion).f1
    return float(f1.mean()) if f1.size else 0.0


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) for binary labels and positive-class scores, like scikit-learn's.

    One point per distinct score (highest first), starting at (0, 0) with threshold +inf.
    With no positives (or no negatives) the undefined rate is 0.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1] if len(scores) else []
    true_pos = np.cumsum(sorted_labels)[last_of_run]
    false_pos = np.cumsum(~sorted_labels)[last_of_run]
    tpr = np.r_[0.0, safe_divide(true_pos, labels.sum())]
    fpr = np.r_[0.0, safe_divide(false_pos, (~labels).sum())]
    thresholds = np.r_[np.inf, sorted_scores[last_of_run]]
    return fpr, tpr, thresholds


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Area under a curve by the trapezoid rule (x increasing)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0)) if len(x) > 1 else 0.0


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(labels, scores)
    return auc(fpr, tpr)


def classification_summary(targets: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Every single-label metric as a JSON-ready dict (AUC only for two classes)."""
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
    return summary


# --- multi-label: targets and probabilities are both (N, K), targets 0/1 ----------------------

def multilabel_metrics(targets: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> PerClass:
    """Per-label precision, recall, F1 and support with label predicted when p >= threshold."""
    actual = np.asarray(targets).astype(bool)
    predicted = np.asarray(probs) >= threshold
    return _prf((actual & predicted).sum(axis=0), predicted.sum(axis=0), actual.sum(axis=0))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """AP = sum over thresholds of (R_n - R_{n-1}) * P_n, as scikit-learn computes it; 0 without positives."""
    labels = np.asarray(labels).astype(bool)
    if not labels.any():
        return 0.0
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]
    true_pos = np.cumsum(sorted_labels)[last_of_run]
    precision = true_pos / (last_of_run + 1)
    recall = true_pos / labels.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(targets: np.ndarray, probs: np.ndarray) -> float:
    """Mean AP over the labels that have at least one positive (AP is undefined for the others)."""
    targets, probs = np.asarray(targets), np.asarray(probs)
    present = [k for k in range(targets.shape[1]) if targets[:, k].any()]
    return float(np.mean([average_precision(targets[:, k], probs[:, k]) for k in present])) if present else 0.0


def exact_match_ratio(targets: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of samples whose whole predicted label set equals the true one."""
    actual = np.asarray(targets).astype(bool)
    matches = np.all(actual == (np.asarray(probs) >= threshold), axis=1)
    return float(matches.mean()) if len(matches) else 0.0


def multilabel_scores(probs: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5) -> dict[str, float]:
    """{val_loss, val_acc, val_map, val_exact_match, val_f1} of (N, K) sigmoid probs and 0/1 targets.

    ``val_acc`` of a multi-label run is the per-label accuracy (mean over images and labels of a
    correct yes/no decision at the threshold), so checkpoint selection and the training table
    work unchanged; the other metrics are logged beside it.
    """
    p = probs.double().clamp(MIN_PROB, 1 - MIN_PROB)
    y = targets.double()
    loss = float(-(y * p.log() + (1 - y) * (1 - p).log()).mean()) if len(y) else 0.0
    decided = (probs >= threshold) == targets.bool()
    t, pr = targets.numpy(), probs.numpy()
    return {"val_loss": loss, "val_acc": float(decided.float().mean()) if len(y) else 0.0,
            "val_map": mean_average_precision(t, pr), "val_exact_match": exact_match_ratio(t, pr, threshold),
            "val_f1": float(np.mean(multilabel_metrics(t, pr, threshold).f1))}


def per_label_accuracy(probs: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(K,) fraction of images whose yes/no decision for each label is right."""
    return ((probs >= threshold) == targets.bool()).float().mean(dim=0)
