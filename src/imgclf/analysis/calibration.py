"""How far predicted probabilities are from observed frequencies, and a temperature that fixes it.

* **ECE** (expected calibration error, Guo et al. 2017): top-label confidences in 15 equal-width
  bins ``(0, 1/15], (1/15, 2/15], ... (14/15, 1]`` (a confidence of exactly 0 falls in the first);
  ECE = sum over bins of (share of samples) x |accuracy - mean confidence|.
* **NLL**: mean -log p(true class), the evaluation loss (:func:`imgclf.analysis.metrics.mean_loss`).
* **Brier score**: mean over samples of sum_k (p_k - y_k)^2 with one-hot y (Brier 1950; 0 is
  perfect, 2 the worst; for two classes it is twice scikit-learn's ``brier_score_loss``).

Multi-label runs are scored per (image, label) pair as a two-class problem ``[1 - p, p]``; their
Brier score is the mean (p - y)^2 over the pairs (scikit-learn's definition) and their NLL the
mean binary cross-entropy.

Temperature scaling divides every logit by one T > 0 before the output's link function
(softmax, or the sigmoid of one-logit and multi-label runs); T is the minimiser of the run's own
NLL on held-out logits, found by golden-section search on log T (the NLL is convex in 1/T,
so it has one minimum on that axis).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from imgclf.analysis.metrics import mean_loss, predictions, safe_divide

NUM_BINS = 15
T_BOUNDS = (0.05, 20.0)          # the search range of the temperature
SEARCH_TOL_LOG = 1e-5            # stop when the log T bracket is this narrow


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin counts, mean top-label confidence and accuracy, each shaped (num_bins,)."""

    edges: np.ndarray       # (num_bins + 1,) 0, 1/15, ..., 1
    counts: np.ndarray
    confidence: np.ndarray  # 0 in an empty bin
    accuracy: np.ndarray    # 0 in an empty bin

    def rows(self) -> list[dict[str, float]]:
        """JSON-ready bins (evaluation.json; the report redraws the diagram from them)."""
        return [{"lower": float(lo), "upper": float(hi), "count": int(n), "confidence": float(c), "accuracy": float(a)}
                for lo, hi, n, c, a in zip(self.edges[:-1], self.edges[1:], self.counts, self.confidence,
                                           self.accuracy)]


def reliability_bins(confidences: np.ndarray, correct: np.ndarray, num_bins: int = NUM_BINS) -> ReliabilityBins:
    """Equal-width bins ``(lower, upper]`` of ``confidences`` (N,) with ``correct`` (N,) 0/1 outcomes."""
    confidences = np.clip(np.asarray(confidences, dtype=np.float64), 0.0, 1.0)
    correct = np.asarray(correct, dtype=np.float64)
    index = np.clip(np.ceil(confidences * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    counts = np.bincount(index, minlength=num_bins)
    conf_sum = np.bincount(index, weights=confidences, minlength=num_bins)
    acc_sum = np.bincount(index, weights=correct, minlength=num_bins)
    return ReliabilityBins(np.linspace(0.0, 1.0, num_bins + 1), counts,
                           safe_divide(conf_sum, counts), safe_divide(acc_sum, counts))


def ece_of_bins(bins: ReliabilityBins) -> float:
    """Sum over bins of (count / N) * |accuracy - confidence|; 0 for no samples."""
    total = bins.counts.sum()
    return float(np.sum(safe_divide(bins.counts, total) * np.abs(bins.accuracy - bins.confidence)))


def top_label_bins(targets: np.ndarray, probs: np.ndarray, num_bins: int = NUM_BINS) -> ReliabilityBins:
    """Reliability bins of the top-label confidence max_k p_k against whether the top label is right."""
    probs = np.asarray(probs, dtype=np.float64)
    correct = predictions(probs) == np.asarray(targets)
    return reliability_bins(probs.max(axis=1) if len(probs) else np.zeros(0), correct, num_bins)


def expected_calibration_error(targets: np.ndarray, probs: np.ndarray, num_bins: int = NUM_BINS) -> float:
    """Top-label ECE of (N, K) probabilities against integer targets (N,)."""
    return ece_of_bins(top_label_bins(targets, probs, num_bins))


def brier_score(targets: np.ndarray, probs: np.ndarray) -> float:
    """Mean over samples of sum_k (p_k - onehot_k)^2 (0 = perfect, 2 = worst); 0 for no samples."""
    probs = np.asarray(probs, dtype=np.float64)
    if not len(probs):
        return 0.0
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(probs)), np.asarray(targets, dtype=np.int64)] = 1.0
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def calibration_summary(targets: np.ndarray, probs: np.ndarray, temperature: float = 1.0,
                        num_bins: int = NUM_BINS) -> dict[str, Any]:
    """ECE, NLL, Brier and the reliability bins of single-label probabilities, JSON-ready."""
    bins = top_label_bins(targets, probs, num_bins)
    return {"ece": ece_of_bins(bins), "nll": mean_loss(targets, probs), "brier": brier_score(targets, probs),
            "temperature": float(temperature), "num_bins": num_bins, "bins": bins.rows()}


def multilabel_pairs(targets: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N*K,) 0/1 targets and (N*K, 2) probabilities ``[1 - p, p]`` of every (image, label) pair."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    return np.asarray(targets).reshape(-1).astype(np.int64), np.stack([1.0 - p, p], axis=1)


def multilabel_calibration_summary(targets: np.ndarray, probs: np.ndarray, temperature: float = 1.0,
                                   num_bins: int = NUM_BINS) -> dict[str, Any]:
    """ECE and reliability bins over (image, label) pairs; NLL = mean BCE; Brier = mean (p - y)^2."""
    pair_targets, pair_probs = multilabel_pairs(targets, probs)
    summary = calibration_summary(pair_targets, pair_probs, temperature, num_bins)
    summary["brier"] = summary["brier"] / 2.0   # sum over [1-p, p] counts each pair's error twice
    return summary


# ----------------------------------------------------------------------------- temperature

def _nll_softmax(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, targets.long())


def _nll_sigmoid1(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.reshape(-1), targets.reshape(-1).to(logits.dtype))


def _nll_multilabel(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


# the NLL of each output kind (see imgclf.models.outputs) as a function of the logits
NLL_OF_LOGITS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "softmax": _nll_softmax,
    "sigmoid1": _nll_sigmoid1,
    "multilabel": _nll_multilabel,
}


def temperature_nll(logits: torch.Tensor, targets: torch.Tensor, temperature: float, output: str = "softmax") -> float:
    """Mean NLL of ``logits / temperature`` (float64) for the output kind."""
    return float(NLL_OF_LOGITS[output](logits.double() / temperature, targets))


@dataclass(frozen=True)
class TemperatureFit:
    temperature: float
    nll_before: float        # at T = 1
    nll_after: float         # at the fitted T
    at_bound: bool           # the minimum lies on the edge of T_BOUNDS (the split gives little to fit)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, output: str = "softmax",
                    bounds: tuple[float, float] = T_BOUNDS) -> TemperatureFit:
    """The T in ``bounds`` that minimises the NLL of ``logits / T``: golden-section search on log T.

    ``logits`` (N, num_outputs), ``targets`` (N,) class indices or (N, K) 0/1 for multi-label.
    """
    def nll(log_t: float) -> float:
        return temperature_nll(logits, targets, math.exp(log_t), output)

    low, high = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    while high - low > SEARCH_TOL_LOG:
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    log_t = (low + high) / 2.0
    edge = 10 * SEARCH_TOL_LOG
    at_bound = log_t - math.log(bounds[0]) < edge or math.log(bounds[1]) - log_t < edge
    return TemperatureFit(math.exp(log_t), nll(0.0), nll(log_t), at_bound)
