"""Validation numbers of a multi-label model: BCE, per-label accuracy, mAP, exact match, F1.

``val_acc`` of a multi-label run is the per-label accuracy (mean over images and labels
of a correct yes/no decision at the threshold), so checkpoint selection and the
training table work unchanged; the other metrics are logged beside it.
"""

from __future__ import annotations

import numpy as np
import torch

from imgclf.analysis.metrics import exact_match_ratio, mean_average_precision, multilabel_metrics

MIN_PROB = 1e-12


def multilabel_scores(probs: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5) -> dict[str, float]:
    """{val_loss, val_acc, val_map, val_exact_match, val_f1} of (N, K) sigmoid probs and 0/1 targets."""
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
