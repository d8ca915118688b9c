"""Output kinds: how many logits a model has and how they become (N, K) probabilities.

Three kinds, stored in the checkpoint metadata as ``"output"`` so every command turns
logits into probabilities the same way:

* ``softmax``:   K logits, one class per image (cross-entropy, ``--loss ce``).
* ``sigmoid1``:  one logit for two classes (``--loss bce``); probabilities ``[1 - p, p]``.
* ``multilabel``: K logits, each label independent (sigmoid + BCE, ``--multi-label``).

A calibration temperature T (``imgclf calibrate``) divides the logits before the link function,
for every kind alike.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


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


def logits_to_probs(logits: torch.Tensor, output_kind: str = "softmax", temperature: float = 1.0) -> torch.Tensor:
    """(N, K) probabilities of a model's logits (divided by ``temperature``) for its output kind."""
    if temperature != 1.0:
        logits = logits.float() / temperature
    return PROBABILITIES[output_kind](logits)
