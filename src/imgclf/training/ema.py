"""An exponential moving average of the weights (``--ema DECAY``): the model that is evaluated and saved.

After every optimisation step ``ema = d * ema + (1 - d) * weights`` for the parameters and the
floating-point buffers (BatchNorm statistics), with the decay warmed up as
``d = min(DECAY, (1 + step) / (10 + step))`` so the first steps do not drag the average towards
the random initialisation. Integer buffers (BatchNorm's step counter) are copied. The average is a
pure function of the weights seen so far, so it goes into the resume state and a resumed run
continues it exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn


class WeightAverage:
    """A frozen copy of the model that follows the live weights with an exponential moving average."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._pairs: tuple[nn.Module, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor],
                           list[torch.Tensor]] | None = None

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    def _paired(self, model: nn.Module) -> tuple[list[torch.Tensor], ...]:
        """(averaged floats, live floats, averaged others, live others), matched by name once per live
        model: the tensors are updated in place, so the lists stay valid from step to step."""
        if self._pairs is None or self._pairs[0] is not model:
            live = model.state_dict(keep_vars=True)
            floats: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
            others: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
            for name, averaged in self.model.state_dict(keep_vars=True).items():
                group = floats if averaged.is_floating_point() else others
                group[0].append(averaged.data)
                group[1].append(live[name].data)
            self._pairs = (model, *floats, *others)
        return self._pairs[1:]

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold in the live weights after optimisation step ``step`` (0-based)."""
        averaged, live, averaged_other, live_other = self._paired(model)
        if averaged:
            torch._foreach_lerp_(averaged, [v.to(a.dtype) for a, v in zip(averaged, live)],
                                 1.0 - self.decay_at(step))
        for a, v in zip(averaged_other, live_other):
            a.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.model.state_dict())

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
