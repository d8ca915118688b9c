"""Learning-rate schedules: PyTorch's own ``lr_scheduler`` classes, chained, as a factor of the peak lr.

The chain runs on a one-parameter proxy optimizer whose lr starts at 1.0, so its lr *is*
the factor that :func:`imgclf.training.optim.set_lr` applies to every real group (head included).
Each scheduler is stepped when PyTorch expects it: per epoch (step, multistep,
exponential, plateau with a val metric) or per optimisation step (warm-up, cosine,
one-cycle). ``state_dict`` goes into the resume state (plain numbers only, so
``torch.load(weights_only=True)`` reads it) and a resumed run follows the same curve.

Chain syntax: ``--scheduler exponential,multistep`` with per-scheduler parameters
``--sched-args exponential:gamma=0.9 "multistep:milestones=30|80,gamma=0.1"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import lr_scheduler as S

from imgclf.analysis.metrics import lower_is_better
from imgclf.config.schedules import SCHEDULER_PARAMS, parse_chain, parse_sched_args
from imgclf.training.optim import SGD

WARMUP_START = 0.1   # warm-up starts at lr/10


@dataclass(frozen=True)
class Horizon:
    """What the schedulers need to know about the run."""

    steps_per_epoch: int
    epochs: int
    warmup_steps: int = 0

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs


Builder = Callable[[torch.optim.Optimizer, Mapping[str, Any], Horizon], Any]


@dataclass(frozen=True)
class SchedulerKind:
    build: Builder
    per: str                                  # "epoch", "step" or "plateau"
    after_warmup: bool = False                # starts counting when the warm-up ends
    own_warmup: bool = False                  # has its own warm-up phase (one-cycle)
    help: str = ""


def _onecycle(opt: torch.optim.Optimizer, p: Mapping[str, Any], h: Horizon) -> S.LRScheduler:
    pct = p.get("pct_start", h.warmup_steps / h.total_steps if h.warmup_steps else 0.3)
    return S.OneCycleLR(opt, max_lr=1.0, total_steps=max(h.total_steps, 2), pct_start=min(max(pct, 1e-3), 0.99),
                        anneal_strategy=p.get("anneal", "cos"), div_factor=p.get("div_factor", 25.0),
                        final_div_factor=p.get("final_div_factor", 1e4), cycle_momentum=False)


def _plateau(opt: torch.optim.Optimizer, p: Mapping[str, Any], h: Horizon) -> S.ReduceLROnPlateau:
    return S.ReduceLROnPlateau(opt, mode=metric_mode(p.get("metric", "val_loss")), factor=p.get("factor", 0.1),
                               patience=p.get("patience", 2), threshold=p.get("threshold", 1e-4),
                               cooldown=p.get("cooldown", 0))


SCHEDULERS: dict[str, SchedulerKind] = {
    "constant": SchedulerKind(lambda opt, p, h: None, "epoch", help="the peak lr throughout"),
    "step": SchedulerKind(lambda opt, p, h: S.StepLR(opt, p.get("step_size", 30), p.get("gamma", 0.1)), "epoch",
                          help="times gamma every step_size epochs"),
    "multistep": SchedulerKind(lambda opt, p, h: S.MultiStepLR(opt, list(p.get("milestones", (30, 80))),
                                                                            p.get("gamma", 0.1)), "epoch",
                               help="times gamma at each milestone epoch"),
    "exponential": SchedulerKind(lambda opt, p, h: S.ExponentialLR(opt, p.get("gamma", 0.1)), "epoch",
                                 help="times gamma every epoch"),
    "cosine": SchedulerKind(lambda opt, p, h: S.CosineAnnealingLR(opt, max(h.total_steps - h.warmup_steps, 1)),
                            "step", after_warmup=True, help="cosine to 0 at the end of the run, per step"),
    "onecycle": SchedulerKind(_onecycle, "step", own_warmup=True,
                              help="one-cycle per step; its rise lasts --warmup-epochs unless pct_start is set"),
    "plateau": SchedulerKind(_plateau, "plateau",
                             help="times factor when a val metric stops improving for patience epochs"),
}


def metric_mode(metric: str) -> str:
    """PyTorch's plateau mode of a val metric: 'min' for losses, 'max' for the rest."""
    return "min" if lower_is_better(metric) else "max"


@dataclass
class _Entry:
    name: str
    scheduler: Any
    kind: SchedulerKind
    metric: str = ""


class LRSchedule:
    """The lr factor of each optimisation step: ``factor`` before the step, then ``after_step``/``after_epoch``."""

    def __init__(self, names: Sequence[str], horizon: Horizon, params: Mapping[str, Mapping[str, Any]] | None = None,
                 defaults: Mapping[str, Any] | None = None) -> None:
        self.horizon = horizon
        self._param = torch.nn.Parameter(torch.zeros(1))
        self.proxy = SGD([self._param], lr=1.0)
        self.steps = 0
        own = any(SCHEDULERS[n].own_warmup for n in names)
        self.warmup = (S.LinearLR(self.proxy, WARMUP_START, 1.0, total_iters=horizon.warmup_steps)
                       if horizon.warmup_steps > 0 and not own else None)
        self.entries: list[_Entry] = []
        for name in names:
            kind = SCHEDULERS[name]
            p = {k: v for k, v in (defaults or {}).items() if k in SCHEDULER_PARAMS[name]}
            p |= dict((params or {}).get(name, {}))
            scheduler = kind.build(self.proxy, p, horizon)
            if scheduler is not None:
                self.entries.append(_Entry(name, scheduler, kind, p.get("metric", "val_loss")))
        self.proxy.step()   # a no-op (no grads) that tells PyTorch the optimizer steps before its schedulers

    @property
    def factor(self) -> float:
        return float(self.proxy.param_groups[0]["lr"])

    def after_step(self) -> None:
        """One optimisation step is done: step warm-up and the per-step schedulers."""
        self.steps += 1
        if self.warmup is not None and self.steps <= self.horizon.warmup_steps:
            self.warmup.step()
        for e in self.entries:
            if e.kind.per == "step" and self.steps < self.horizon.total_steps and \
                    (not e.kind.after_warmup or self.steps > self.horizon.warmup_steps):
                e.scheduler.step()

    def after_epoch(self, metrics: Mapping[str, float] | None = None) -> None:
        """An epoch is done (and evaluated): step the per-epoch and plateau schedulers."""
        for e in self.entries:
            if e.kind.per == "epoch":
                e.scheduler.step()
            elif e.kind.per == "plateau" and metrics and e.metric in metrics:
                e.scheduler.step(float(metrics[e.metric]))

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "proxy": self.proxy.state_dict(),
                "warmup": self.warmup.state_dict() if self.warmup is not None else None,
                "schedulers": [e.scheduler.state_dict() for e in self.entries]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.proxy.load_state_dict(state["proxy"])
        if self.warmup is not None and state.get("warmup") is not None:
            self.warmup.load_state_dict(state["warmup"])
        for e, saved in zip(self.entries, state["schedulers"]):
            e.scheduler.load_state_dict(saved)


def create_schedule(chain: str, sched_args: Sequence[str], steps_per_epoch: int, epochs: int,
                    warmup_steps: int, defaults: Mapping[str, Any] | None = None) -> LRSchedule:
    """An :class:`LRSchedule` from the ``--scheduler``/``--sched-args`` strings (already checked)."""
    params, _ = parse_sched_args(sched_args)
    horizon = Horizon(steps_per_epoch, epochs, warmup_steps)
    return LRSchedule(parse_chain(chain), horizon, params, defaults)


@dataclass(frozen=True)
class ResolutionSchedule:
    """Progressive resizing: epoch 0 trains at ``start`` px, growing linearly (rounded down to a
    multiple of ``multiple`` px) to ``full`` px at epoch ``full_at``, and stays there; evaluation is
    always at ``full``."""

    start: int
    full: int
    full_at: int
    multiple: int = 8

    def size_at(self, epoch: int) -> int:
        if epoch >= self.full_at:
            return self.full
        size = self.start + (self.full - self.start) * epoch / self.full_at
        return min(self.full, max(self.multiple, int(size // self.multiple) * self.multiple))
