"""Multi-label runs: the evaluation numbers, predictions rows, and the images with a wrong label.

Targets and probabilities are both (N, K), targets 0/1. The metrics themselves live in
:mod:`imgclf.analysis.metrics`; the ``labels.csv`` layout and multi-hot targets in
:mod:`imgclf.data.multilabel`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.analysis.metrics import multilabel_metrics, multilabel_sample_loss, multilabel_scores


def label_names(row: np.ndarray, classes: Sequence[str]) -> str:
    """``a;c``: the names of the labels set in a 0/1 (or bool) row."""
    return ";".join(classes[k] for k in np.flatnonzero(row))


def multilabel_summary(targets: np.ndarray, probs: np.ndarray, classes: list[str], threshold: float) -> dict:
    """evaluation.json for a multi-label run: the numbers training logs, plus per-label P/R/F1."""
    scores = multilabel_scores(probs, targets, threshold)
    mean_ap = None if math.isnan(scores["val_map"]) else scores["val_map"]   # undefined: no label has a positive
    return {"multi_label": True, "threshold": threshold, "num_images": int(len(targets)),
            "accuracy": scores["val_acc"], "loss": scores["val_loss"], "map": mean_ap,
            "exact_match": scores["val_exact_match"], "macro_f1": scores["val_f1"],
            "per_class": [dict(zip(("class", "precision", "recall", "f1", "support"), row))
                          for row in multilabel_metrics(targets, probs, threshold).rows(classes)]}


def multilabel_prediction_rows(paths: Sequence[Path], targets: np.ndarray, probs: np.ndarray,
                               classes: list[str], threshold: float) -> tuple[list[str], list[list[Any]]]:
    """predictions.csv of a multi-label run: path, true and predicted label sets, probabilities, correct."""
    predicted = probs >= threshold
    header = ["path", "true", "predicted", *(f"prob_{c}" for c in classes), "correct"]
    rows = [[str(p), label_names(targets[i], classes), label_names(predicted[i], classes),
             *(f"{v:.6f}" for v in probs[i]), int((predicted[i] == targets[i].astype(bool)).all())]
            for i, p in enumerate(paths)]
    return header, rows


@dataclass(frozen=True)
class WrongLabels:
    """One multi-label sample the model gets wrong: labels it missed and labels it added."""

    index: int
    missed: list[str]
    extra: list[str]
    loss: float


def multilabel_mistakes(targets: np.ndarray, probs: np.ndarray, classes: Sequence[str],
                        threshold: float = 0.5) -> list[WrongLabels]:
    """Samples with any wrong label, highest mean binary cross-entropy first."""
    actual = np.asarray(targets).astype(bool)
    predicted = np.asarray(probs) >= threshold
    losses = multilabel_sample_loss(targets, probs)
    wrong = np.flatnonzero(np.any(actual != predicted, axis=1))
    wrong = wrong[np.argsort(-losses[wrong], kind="mergesort")]
    return [WrongLabels(int(i), [classes[k] for k in np.flatnonzero(actual[i] & ~predicted[i])],
                        [classes[k] for k in np.flatnonzero(~actual[i] & predicted[i])], float(losses[i]))
            for i in wrong]


def multilabel_mistake_rows(wrong: Sequence[WrongLabels], paths: Sequence[Path], copies: Sequence[str],
                            targets: np.ndarray, probs: np.ndarray, classes: list[str],
                            threshold: float) -> tuple[list[str], list[list[Any]]]:
    """mistakes.csv of a multi-label run, one row per wrong image in ``wrong``'s order (rank 1 first)."""
    header = ["rank", "path", "copy", "true", "predicted", "missing", "extra",
              *(f"prob_{c}" for c in classes), "loss"]
    rows = [[rank, str(paths[item.index]), copy, label_names(targets[item.index], classes),
             label_names(probs[item.index] >= threshold, classes), ";".join(item.missed), ";".join(item.extra),
             *(f"{v:.6f}" for v in probs[item.index]), f"{item.loss:.6f}"]
            for rank, (item, copy) in enumerate(zip(wrong, copies), start=1)]
    return header, rows
