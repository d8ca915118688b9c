"""The learning-rate range test: the ramp, the smoothing, the stop rule and the suggestions."""

from __future__ import annotations

import math

import pytest

from imgclf.training.lr_find import DIVERGED, lr_ramp, run_range_test, steepest_index, valley_index


def test_the_ramp_is_geometric_from_start_to_end() -> None:
    lrs = lr_ramp(1e-5, 1.0, 6)
    assert lrs[0] == pytest.approx(1e-5) and lrs[-1] == pytest.approx(1.0)
    ratios = {round(b / a, 9) for a, b in zip(lrs, lrs[1:])}
    assert ratios == {10.0}


def bowl(lr: float) -> float:
    """A typical range-test curve: flat, falling between 1e-3 and 1e-1, then blowing up."""
    x = math.log10(lr)
    return 2.3 - 1.8 / (1 + math.exp(-4 * (x + 2))) + (0 if x < -0.5 else 50 * (x + 0.5) ** 2)


def test_the_valley_lies_on_the_falling_stretch_below_the_minimum() -> None:
    test = run_range_test(bowl, lr_ramp(1e-6, 10.0, 200))
    minimum = test.minimum
    assert 3e-3 < test.valley < 3e-2           # where the curve has fallen halfway (1e-2 in ``bowl``)
    assert 3e-3 < test.steepest < 3e-2         # the steepest point of ``bowl`` is at 1e-2 too
    assert test.suggestions()["minimum/10"] == pytest.approx(minimum / 10)


def test_the_test_stops_when_the_loss_diverges_or_is_not_finite() -> None:
    diverging = run_range_test(bowl, lr_ramp(1e-6, 1e3, 300))
    assert diverging.stopped_early and diverging.lrs[-1] < 1e3
    assert diverging.smoothed[-1] > DIVERGED * min(diverging.smoothed)
    nan_at = lr_ramp(1e-6, 1.0, 50)[30]
    broken = run_range_test(lambda lr: float("nan") if lr >= nan_at else 1.0, lr_ramp(1e-6, 1.0, 50))
    assert broken.stopped_early and len(broken.lrs) == 30


def test_suggestions_do_not_lag_behind_the_loss() -> None:
    """The suggestion comes from a centred average: the same lr whatever the ramp's density."""
    coarse = run_range_test(bowl, lr_ramp(1e-6, 10.0, 100)).valley
    fine = run_range_test(bowl, lr_ramp(1e-6, 10.0, 400)).valley
    assert fine / coarse == pytest.approx(1.0, rel=0.25)


def test_smoothing_is_debiased() -> None:
    """A constant loss stays exactly that constant from the first step on (no start-up bias towards 0)."""
    test = run_range_test(lambda lr: 0.7, lr_ramp(1e-4, 1e-1, 20))
    assert test.smoothed == pytest.approx([0.7] * 20)


def test_index_helpers_on_tiny_curves() -> None:
    assert valley_index([1.0, 0.5]) == 0
    assert valley_index([3.0, 2.9, 2.0, 0.5, 0.4, 2.0]) == 3      # valley 3.0 -> 0.4: halfway 1.7
    assert steepest_index([1e-3, 1e-2, 1e-1, 1.0], [1.0, 0.9, 0.2, 0.15]) == 1
