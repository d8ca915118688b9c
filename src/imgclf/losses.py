"""Loss registry and the mapping from a model's outputs to (N, K) probabilities.

Three output kinds, stored in the checkpoint metadata as ``"output"`` so every
command turns logits into probabilities the same way:

* ``softmax``:   K logits, one class per image (cross-entropy, ``--loss ce``).
* ``sigmoid1``:  one logit for two classes (``--loss bce``); probabilities ``[1 - p, p]``.
* ``multilabel``: K logits, each label independent (sigmoid + BCE, ``--multi-label``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

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


def num_model_outputs(output: str, num_classes: int) -> int:
    """How many logits the head has: 1 for ``sigmoid1``, else one per class."""
    return 1 if output == "sigmoid1" else num_classes


def _sigmoid_pair(logits: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits.float().view(-1, 1))
    return torch.cat([1.0 - p, p], dim=1)


PROBABILITIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softmax": lambda logits: torch.softmax(logits.float(), dim=1),
    "sigmoid1": _sigmoid_pair,
    "multilabel": lambda logits: torch.sigmoid(logits.float()),
}


def logits_to_probs(logits: torch.Tensor, output_kind: str = "softmax") -> torch.Tensor:
    """(N, K) probabilities of a model's logits for its output kind (``meta["output"]``)."""
    return PROBABILITIES[output_kind](logits)
