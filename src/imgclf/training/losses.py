"""Training losses, each tied to the output kind of the model it trains.

The output kinds (``softmax``, ``sigmoid1``, ``multilabel``) and how logits become
probabilities live in :mod:`imgclf.models.outputs`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from imgclf.errors import ImgclfError

LossFactory = Callable[..., nn.Module]


def smooth_targets(targets: torch.Tensor, num_classes: int, eps: float) -> torch.Tensor:
    """(N, K) label-smoothed one-hot targets: ``y * (1 - eps) + eps / K``."""
    one_hot = F.one_hot(targets.long(), num_classes).float()
    return one_hot * (1.0 - eps) + eps / num_classes


class SmoothedCrossEntropy(nn.Module):
    """Cross-entropy against smoothed targets, optionally class-weighted (mean over the batch).

    Same value as ``nn.CrossEntropyLoss(label_smoothing=eps)`` without weights; with
    weights each sample counts ``w[y]`` and the mean divides by the sum of the weights.
    """

    def __init__(self, label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.eps = label_smoothing
        self.register_buffer("weights", class_weights, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # (N, K), (N,)
        soft = smooth_targets(targets, logits.shape[1], self.eps)
        per_sample = -(soft * F.log_softmax(logits.float(), dim=1)).sum(dim=1)
        if self.weights is None:
            return per_sample.mean()
        w = self.weights.to(logits.device)[targets]
        return (per_sample * w).sum() / w.sum()


class BinaryLogitLoss(nn.Module):
    """BCE-with-logits on a single logit (N, 1) for two classes; target 1 = the second class.

    Label smoothing moves the targets to ``eps/2`` and ``1 - eps/2``; class weights
    (of both classes) weight each sample by its class.
    """

    def __init__(self, label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.eps = label_smoothing
        self.register_buffer("weights", class_weights, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # (N, 1), (N,)
        y = targets.float() * (1.0 - self.eps) + self.eps / 2
        per_sample = F.binary_cross_entropy_with_logits(logits.float().view(-1), y, reduction="none")
        if self.weights is None:
            return per_sample.mean()
        w = self.weights.to(logits.device)[targets.long()]
        return (per_sample * w).sum() / w.sum()


class MultiLabelLoss(nn.Module):
    """BCE-with-logits on (N, K) multi-hot targets; class weights act as per-label ``pos_weight``."""

    def __init__(self, label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.eps = label_smoothing
        self.register_buffer("pos_weight", class_weights, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # (N, K), (N, K)
        y = targets.float() * (1.0 - self.eps) + self.eps / 2
        pos_weight = None if self.pos_weight is None else self.pos_weight.to(logits.device)
        return F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=pos_weight)


# name -> (factory, output kind of the model trained with it)
LOSSES: dict[str, tuple[LossFactory, str]] = {
    "ce": (SmoothedCrossEntropy, "softmax"),
    "bce": (BinaryLogitLoss, "sigmoid1"),
    "multilabel": (MultiLabelLoss, "multilabel"),
}


def create_loss(name: str, label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None) -> nn.Module:
    return LOSSES[name][0](label_smoothing=label_smoothing, class_weights=class_weights)


def output_kind(loss_name: str) -> str:
    """The output kind (``softmax``, ``sigmoid1``, ``multilabel``) of a model trained with this loss."""
    return LOSSES[loss_name][1]


def loss_name_for(output: str) -> str:
    """The loss that trains a model of this output kind."""
    return next(name for name, (_, kind) in LOSSES.items() if kind == output)


def resolve_output(loss_name: str, multi_label: bool, classes: list[str]) -> str:
    """The model's output kind: ``multilabel`` for multi-label data, else the kind of ``--loss``."""
    if multi_label:
        return "multilabel"
    if loss_name == "bce" and len(classes) != 2:
        raise ImgclfError(f"--loss bce: needs exactly two classes, found {len(classes)} "
                          f"({', '.join(classes[:6])}); use --loss ce")
    return output_kind(loss_name)
