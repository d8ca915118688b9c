"""BatchNorm statistics measured afresh before an evaluation (``--bn-refresh N``).

In training mode BatchNorm normalises with each batch's own statistics and keeps running
averages (momentum 0.1) for evaluation. Those averages lag the weights by about ten steps and
start from mean 0, variance 1: in a run of a few dozen steps (a couple of hundred images) they
never catch up, and a model that trains well evaluates as if untrained (val loss stuck at
ln K). Recomputing them with the current weights on a fixed sample of train images, as an
equal-weight average over its batches (BatchNorm's ``momentum=None``), removes the lag at the cost
of a forward pass over the sample. It changes only the running statistics, which training
steps do not read, so the training trajectory and exact resume are unaffected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
from torch import nn

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, NORM_TYPES) and m.track_running_stats]


@torch.no_grad()
def refresh_batch_norm(model: nn.Module, inputs: Iterable[torch.Tensor],
                       autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> int:
    """Replace the running statistics of every BatchNorm layer by their average over ``inputs``
    (normalised float batches, run under ``autocast``); returns the number of images seen (0: no
    BatchNorm, nothing done)."""
    norms = batch_norms(model)
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None            # cumulative average: every batch counts the same
    model.train()
    seen = 0
    try:
        for x in inputs:
            with autocast():
                model(x)
            seen += x.shape[0]
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return seen
