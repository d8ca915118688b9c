"""Optimizer and learning-rate schedule registries.

The learning rate is a pure function of the optimisation step
(``lr_factor(step)``), so a resumed run follows exactly the same curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

OptimizerFactory = Callable[..., torch.optim.Optimizer]


def _sgd(groups: list[dict], lr: float, momentum: float, nesterov: bool, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                           weight_decay=weight_decay)


def _adam(groups: list[dict], lr: float, momentum: float, nesterov: bool, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)


def _adamw(groups: list[dict], lr: float, momentum: float, nesterov: bool, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


OPTIMIZERS: dict[str, OptimizerFactory] = {"sgd": _sgd, "adam": _adam, "adamw": _adamw}


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv/linear weights only, not on biases and norm parameters."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def create_optimizer(name: str, model: nn.Module, lr: float, momentum: float = 0.9,
                     nesterov: bool = True, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    groups = [g for g in parameter_groups(model, weight_decay) if g["params"]]
    optimizer = OPTIMIZERS[name](groups, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    return optimizer


# --- schedules: factor of the peak lr as a function of progress in epochs ------------------
Schedule = Callable[[float, "ScheduleSpec"], float]


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


SCHEDULES: dict[str, Schedule] = {
    "cosine": _cosine,
    "step": lambda epoch, s: s.gamma ** int(epoch // max(s.step_size, 1)),
    "multistep": lambda epoch, s: s.gamma ** sum(epoch >= m for m in s.milestones),
    "exponential": lambda epoch, s: s.gamma ** int(epoch),
    "constant": lambda epoch, s: 1.0,
}

WARMUP_START = 0.1   # warm-up starts at lr/10


def lr_factor(epoch: float, spec: ScheduleSpec) -> float:
    """Multiplier of the peak lr at a (fractional) epoch: linear warm-up, then the schedule."""
    factor = SCHEDULES[spec.kind](epoch, spec)
    if spec.warmup_epochs > 0 and epoch < spec.warmup_epochs:
        factor *= WARMUP_START + (1.0 - WARMUP_START) * epoch / spec.warmup_epochs
    return factor


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
    return optimizer.param_groups[0]["lr"]


def count_parameters(params: Iterable[torch.Tensor]) -> int:
    return sum(p.numel() for p in params)
