"""Closed forms of the single lr schedules: the reference the schedule tests compare against."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from imgclf.training.schedules import WARMUP_START


@dataclass(frozen=True)
class ScheduleSpec:
    kind: str
    total_epochs: float
    warmup_epochs: float = 0.0
    step_size: int = 30
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1


def _cosine(epoch: float, s: ScheduleSpec) -> float:
    span = max(s.total_epochs - s.warmup_epochs, 1e-9)
    t = min(max(epoch - s.warmup_epochs, 0.0) / span, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * t))


CLOSED_FORMS: dict[str, Callable[[float, ScheduleSpec], float]] = {
    "cosine": _cosine,
    "step": lambda epoch, s: s.gamma ** int(epoch // max(s.step_size, 1)),
    "multistep": lambda epoch, s: s.gamma ** sum(int(epoch) >= m for m in s.milestones),
    "exponential": lambda epoch, s: s.gamma ** int(epoch),
    "constant": lambda epoch, s: 1.0,
}


def lr_factor(epoch: float, spec: ScheduleSpec) -> float:
    """Closed form of one schedule at a (fractional) epoch: linear warm-up times the schedule."""
    factor = CLOSED_FORMS[spec.kind](epoch, spec)
    if spec.warmup_epochs > 0 and epoch < spec.warmup_epochs:
        factor *= WARMUP_START + (1.0 - WARMUP_START) * epoch / spec.warmup_epochs
    return factor
