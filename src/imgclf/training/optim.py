"""Optimizers, parameter groups, freezing and the update step.

Learning-rate schedules live in :mod:`imgclf.training.schedules`; this module builds the
optimizer they drive. Every group carries ``initial_lr`` (its peak lr) so a schedule
sets ``lr = initial_lr * factor`` on all groups, the head's own lr included.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from imgclf.errors import ImgclfError

OptimizerFactory = Callable[..., torch.optim.Optimizer]


# --- torch's optimizers without the guard that imports torch._dynamo --------------------------

class _Unguarded:
    """A torch optimizer whose methods run without torch's lazy ``torch._dynamo`` guard.

    torch wraps ``add_param_group``, ``zero_grad``, ``state_dict``, ``load_state_dict`` and
    ``step`` of every optimizer in a guard that keeps ``torch.compile`` from tracing into them;
    the guard's first call imports ``torch._dynamo`` (1.3-2.1 s on these CPUs, more than a
    small run's first epoch). imgclf compiles the model, never the optimizer, so the guard has
    nothing to do here: these classes call the very functions torch wraps (``inspect.unwrap``),
    so the arithmetic, the state and ``state_dict`` are torch's own, bit for bit.
    """

    # torch's own functions, unwrapped once (here, not per call: zero_grad and step run every step)
    add_param_group = inspect.unwrap(torch.optim.Optimizer.add_param_group)
    zero_grad = inspect.unwrap(torch.optim.Optimizer.zero_grad)
    state_dict = inspect.unwrap(torch.optim.Optimizer.state_dict)
    load_state_dict = inspect.unwrap(torch.optim.Optimizer.load_state_dict)
    _update: Callable[..., Any]   # the torch class's own step, unwrapped

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> Any:
        """torch's update under the grad mode its guard would set (off unless ``differentiable``)."""
        with torch.set_grad_enabled(self.defaults["differentiable"]):   # type: ignore[attr-defined]
            return self._update(closure)


class SGD(_Unguarded, torch.optim.SGD):
    _update = inspect.unwrap(torch.optim.SGD.step)


class Adam(_Unguarded, torch.optim.Adam):
    _update = inspect.unwrap(torch.optim.Adam.step)


class AdamW(_Unguarded, torch.optim.AdamW):
    _update = inspect.unwrap(torch.optim.AdamW.step)


def _sgd(groups: list[dict], lr: float, momentum: float, nesterov: bool, weight_decay: float) -> torch.optim.Optimizer:
    return SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0, weight_decay=weight_decay)


def _adam(groups: list[dict], lr: float, momentum: float, nesterov: bool, weight_decay: float) -> torch.optim.Optimizer:
    return Adam(groups, lr=lr, weight_decay=weight_decay)


def _adamw(groups: list[dict], lr: float, momentum: float, nesterov: bool, weight_decay: float) -> torch.optim.Optimizer:
    return AdamW(groups, lr=lr, weight_decay=weight_decay)


def _lbfgs(groups: list[dict], lr: float, momentum: float, nesterov: bool, weight_decay: float) -> torch.optim.Optimizer:
    """LBFGS takes one group and no weight decay; strong-Wolfe line search keeps it stable."""
    params = [p for g in groups for p in g["params"]]
    return torch.optim.LBFGS(params, lr=lr, max_iter=4, history_size=10, line_search_fn="strong_wolfe")


OPTIMIZERS: dict[str, OptimizerFactory] = {"sgd": _sgd, "adam": _adam, "adamw": _adamw, "lbfgs": _lbfgs}


def parameter_groups(model: nn.Module, weight_decay: float, head_names: set[str] | None = None,
                     head_lr: float | None = None) -> list[dict]:
    """Weight decay on conv/linear weights only (not biases and norms); the head at its own lr.

    Every parameter is included, also frozen ones: freezing only turns ``requires_grad``
    off, so unfreezing later needs no new optimizer (params without a grad are skipped).
    """
    head_names = head_names if head_lr else set()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        groups.setdefault((name in head_names, param.ndim > 1), []).append(param)
    out = []
    for (is_head, decays), params in sorted(groups.items()):
        group: dict = {"params": params, "weight_decay": weight_decay if decays else 0.0}
        if is_head:
            group["lr"] = head_lr
        out.append(group)
    return out


def create_optimizer(name: str, model: nn.Module, lr: float, momentum: float = 0.9, nesterov: bool = True,
                     weight_decay: float = 0.0, head_lr: float = 0.0) -> torch.optim.Optimizer:
    """``name`` over all parameters; ``head_lr`` > 0 gives the classifier head its own peak lr."""
    head_names = None
    if head_lr > 0:
        from imgclf.models.registry import head_parameter_names

        head_names = head_parameter_names(model)
    groups = parameter_groups(model, weight_decay, head_names, head_lr or None)
    optimizer = OPTIMIZERS[name](groups, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    return optimizer


def uses_closure(optimizer: torch.optim.Optimizer) -> bool:
    return isinstance(optimizer, torch.optim.LBFGS)


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Set every group's lr to its peak lr times ``factor``; returns the first group's lr."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
    return optimizer.param_groups[0]["lr"]


def optimizer_step(optimizer: torch.optim.Optimizer, forward_loss: Callable[[], torch.Tensor],
                   clip_grad: float = 0.0, step: int = 0) -> torch.Tensor:
    """One update: zero grads, ``forward_loss()``, backward, clip, step. Returns the (first) loss.

    LBFGS evaluates the loss several times per step through a closure; ``forward_loss``
    must then give the same function each call (seed dropout inside it). Clipping happens
    inside the closure so every evaluation sees clipped gradients.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = forward_loss()
        if not torch.isfinite(loss):
            raise ImgclfError(f"the loss became {float(loss)} at step {step}; lower --lr or use --clip-grad")
        loss.backward()
        if clip_grad > 0:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], clip_grad)
        return loss

    if uses_closure(optimizer):
        return optimizer.step(closure).detach()   # type: ignore[union-attr]
    loss = closure()
    optimizer.step()
    return loss.detach()


# --- freezing the backbone ------------------------------------------------------------------

@dataclass(frozen=True)
class FreezePlan:
    """Backbone frozen from epoch 0 until ``unfreeze_at`` (0 = for the whole run)."""

    freeze_backbone: bool = False
    unfreeze_at: int = 0

    def frozen_at(self, epoch: int) -> bool:
        return self.freeze_backbone and (self.unfreeze_at <= 0 or epoch < self.unfreeze_at)


def set_backbone_frozen(model: nn.Module, frozen: bool) -> int:
    """Turn ``requires_grad`` off (or on) for every parameter outside the head; returns how many changed."""
    from imgclf.models.registry import head_parameter_names

    head = head_parameter_names(model)
    changed = 0
    for name, param in model.named_parameters():
        want = name in head or not frozen
        if param.requires_grad != want:
            param.requires_grad_(want)
            changed += 1
    return changed
