"""Class imbalance: class weights for the loss and a class-balanced epoch order.

``--balance sampler`` draws each epoch's order with replacement so every class is
equally likely (sample weight 1/n_c); the draw uses a generator seeded from
(seed, epoch), so a resumed run sees exactly the same order. ``--balance loss``
weights each class by n / (K * n_c) (scikit-learn's "balanced"). The warning that
suggests them is :func:`imgclf.data.stats.imbalance_warning`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from imgclf.engine.runtime import seeded_generator

BALANCED_ORDER_STREAM = 7_919   # apart from the plain epoch order of the same (seed, epoch)


def class_weights(counts: torch.Tensor) -> torch.Tensor:
    """(K,) n / (K * n_c); a class without images gets weight 0."""
    counts = counts.float()
    k = len(counts)
    return torch.where(counts > 0, counts.sum() / (k * counts.clamp_min(1)), torch.zeros_like(counts))


def positive_weights(positives: torch.Tensor, num_images: int) -> torch.Tensor:
    """(K,) multi-label ``pos_weight``: negatives / positives per label (1 where a label never occurs)."""
    positives = positives.float()
    return torch.where(positives > 0, (num_images - positives) / positives.clamp_min(1), torch.ones_like(positives))


def loss_weights(counts: torch.Tensor, num_images: int, multi_label: bool) -> torch.Tensor:
    """``--balance loss``: per-label ``pos_weight`` for multi-label data, else class weights."""
    return positive_weights(counts, num_images) if multi_label else class_weights(counts)


def balanced_order(targets: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
    """(N,) sample indices drawn with replacement, each class equally likely; seeded by (seed, epoch)."""
    counts = torch.bincount(targets.long())
    weights = 1.0 / counts[targets.long()].double()                  # (N,) 1 / n_c
    gen = seeded_generator(seed, "epoch", epoch, offset=BALANCED_ORDER_STREAM)
    return torch.multinomial(weights, len(targets), replacement=True, generator=gen)


OrderFn = Callable[[int, int, int], torch.Tensor]   # (num_images, seed, epoch) -> (N,) indices


def sampler_order_fn(targets: torch.Tensor) -> OrderFn:
    """An epoch-order function for the Trainer that draws class-balanced orders of ``targets``."""
    def order(num_images: int, seed: int, epoch: int) -> torch.Tensor:
        return balanced_order(targets, seed, epoch)
    return order
