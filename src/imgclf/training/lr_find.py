"""The learning-rate range test: train a few hundred steps while the lr grows exponentially,
record the loss, and suggest the lr where the loss falls fastest.

As in fastai's ``lr_find`` (after L. Smith, "Cyclical Learning Rates"): the test stops when a
debiased exponential moving average of the loss exceeds ``DIVERGED`` x its minimum. That
average lags the loss by about 1/(1 - beta) steps, which would shift every suggestion to a
larger (riskier) lr, so the suggestions are read from a *centred* moving average of the raw
losses instead (``curve``). The main suggestion is taken in the *valley*: the longest stretch
over which the smoothed loss keeps falling (a longest decreasing subsequence, so noise does not
cut it short), at the point where the loss has fallen halfway from the valley's top to its
bottom. Unlike "halfway along" the stretch, that point does not move with the arbitrary start
of the ramp, and it lies on the steep part, well below the minimum where training turns unstable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from imgclf.data.sources import Batch, BatchSource
from imgclf.engine.distributed import SINGLE, Dist

DIVERGED = 4.0          # stop when the smoothed loss exceeds this x its minimum
SMOOTHING = 0.98        # beta of the debiased moving average of the loss


@dataclass
class RangeTest:
    """The recorded curve and the suggested learning rates."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)       # raw loss at each step
    smoothed: list[float] = field(default_factory=list)     # debiased EMA of the losses (the stop rule)
    stopped_early: bool = False

    @property
    def curve(self) -> list[float]:
        """The losses smoothed without lag: a centred moving average over about 5% of the steps."""
        return centred_average(self.losses, max(1, len(self.losses) // 40))

    @property
    def valley(self) -> float:
        return self.lrs[valley_index(self.curve)]

    @property
    def steepest(self) -> float:
        return self.lrs[steepest_index(self.lrs, self.curve)]

    @property
    def minimum(self) -> float:
        """The lr of the lowest (centred-average) loss; divided by 10, the classic rule of thumb."""
        curve = self.curve
        return self.lrs[min(range(len(curve)), key=curve.__getitem__)]

    def suggestions(self) -> dict[str, float]:
        return {"valley": self.valley, "steepest": self.steepest, "minimum/10": self.minimum / 10}


def lr_ramp(start_lr: float, end_lr: float, num_steps: int) -> list[float]:
    """``num_steps`` learning rates from ``start_lr`` to ``end_lr``, equally spaced in log."""
    if num_steps < 2:
        return [start_lr]
    ratio = (end_lr / start_lr) ** (1 / (num_steps - 1))
    return [start_lr * ratio ** i for i in range(num_steps)]


def centred_average(values: Sequence[float], half_width: int) -> list[float]:
    """Mean of values[i - h .. i + h], the window shrunk symmetrically at both ends."""
    n = len(values)
    out = []
    for i in range(n):
        h = min(half_width, i, n - 1 - i)
        out.append(sum(values[i - h:i + h + 1]) / (2 * h + 1))
    return out


def valley_index(smoothed: Sequence[float]) -> int:
    """Index in the longest decreasing subsequence where the loss is halfway from its top to its bottom."""
    n = len(smoothed)
    if n < 3:
        return 0
    length = [1] * n          # length of the longest decreasing subsequence ending at i
    start = list(range(n))    # where that subsequence starts
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and length[j] + 1 > length[i]:
                length[i], start[i] = length[j] + 1, start[j]
    end = max(range(n), key=lambda i: (length[i], -i))
    halfway = (smoothed[start[end]] + smoothed[end]) / 2
    return next(i for i in range(start[end], end + 1) if smoothed[i] <= halfway)


def steepest_index(lrs: Sequence[float], smoothed: Sequence[float]) -> int:
    """Index of the most negative slope of the loss against log(lr)."""
    if len(smoothed) < 3:
        return 0
    slopes = [(smoothed[i + 1] - smoothed[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1]))
              for i in range(1, len(smoothed) - 1)]
    return 1 + min(range(len(slopes)), key=slopes.__getitem__)


def run_range_test(step: Callable[[float], float], lrs: Sequence[float]) -> RangeTest:
    """Call ``step(lr)`` (one optimisation step at that lr, returning its loss) for each lr in turn."""
    test = RangeTest()
    average = 0.0
    for i, lr in enumerate(lrs):
        loss = step(lr)
        if not math.isfinite(loss):
            test.stopped_early = True
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        smoothed = average / (1 - SMOOTHING ** (i + 1))
        test.lrs.append(lr)
        test.losses.append(loss)
        test.smoothed.append(smoothed)
        if i > 0 and smoothed > DIVERGED * min(test.smoothed):
            test.stopped_early = True
            break
    return test


class RampSchedule:
    """Drives :meth:`Trainer.train_step` through the ramp: the lr factor of step i is ``lrs[i] / peak``,
    where ``peak`` is the lr the optimizer was built with (a separate head lr keeps its ratio)."""

    def __init__(self, lrs: Sequence[float], peak: float) -> None:
        self.lrs, self.peak, self.steps = list(lrs), peak, 0

    @property
    def factor(self) -> float:
        return self.lrs[min(self.steps, len(self.lrs) - 1)] / self.peak

    def after_step(self) -> None:
        self.steps += 1

    def after_epoch(self, metrics: Mapping[str, float] | None = None) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps = int(state["steps"])


def endless_batches(train: BatchSource, batch_size: int, seed: int, ctx: Dist = SINGLE) -> Iterator[Batch]:
    """This rank's training batches of epoch 0, 1, 2... in the training loop's own order."""
    from imgclf.training.fit import epoch_batches

    epoch = 0
    while True:
        chunks = epoch_batches(train.num_images, batch_size, seed, epoch, ctx)
        yield from train.batches(torch.cat(chunks), batch_size)
        epoch += 1


def range_test(train_step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batches: Iterator[Batch],
               lrs: Sequence[float]) -> RangeTest:
    """Run ``train_step`` on successive batches while its schedule walks ``lrs``; the loss of each step."""
    def step(lr: float) -> float:
        images, targets = next(batches)
        return float(train_step(images, targets))

    return run_range_test(step, lrs)
