"""Loss registry: name -> factory(label_smoothing, class_weights) -> loss(logits, targets)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

LossFactory = Callable[..., nn.Module]


def _cross_entropy(label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None) -> nn.Module:
    return nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)


LOSSES: dict[str, LossFactory] = {"ce": _cross_entropy}


def create_loss(name: str, label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None) -> nn.Module:
    return LOSSES[name](label_smoothing=label_smoothing, class_weights=class_weights)
