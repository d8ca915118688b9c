"""Early stopping on any logged validation metric (``--patience N --early-stop-metric M``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from imgclf.analysis.metrics import lower_is_better


@dataclass
class EarlyStopping:
    """Stop when ``metric`` has not improved (by more than ``min_delta``) for ``patience`` evaluations.

    Counts full (epoch-end) evaluations; its state is two numbers, saved in the resume state.
    """

    metric: str
    patience: int
    min_delta: float = 0.0
    best: float = math.nan
    bad_evals: int = 0

    def update(self, row: dict[str, Any]) -> bool:
        """Record one evaluation; True when training should stop now."""
        if self.patience <= 0 or self.metric not in row or row[self.metric] in ("", None):
            return False
        value = float(row[self.metric])
        sign = -1.0 if lower_is_better(self.metric) else 1.0
        if math.isnan(self.best) or sign * (value - self.best) > self.min_delta:
            self.best, self.bad_evals = value, 0
        else:
            self.bad_evals += 1
        return self.bad_evals >= self.patience

    def state_dict(self) -> dict[str, float]:
        return {"best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.best, self.bad_evals = float(state["best"]), int(state["bad_evals"])
