"""Logits -> probabilities in numpy, for the torch-free backends.

The same three output kinds as :mod:`imgclf.models.outputs` (``softmax``, ``sigmoid1``, ``multilabel``);
a test checks both definitions agree. An optional calibration temperature divides the logits.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def _sigmoid_pair(logits: np.ndarray) -> np.ndarray:
    p = _sigmoid(logits.reshape(-1, 1))
    return np.concatenate([1.0 - p, p], axis=1)


PROBABILITIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "softmax": _softmax,
    "sigmoid1": _sigmoid_pair,
    "multilabel": _sigmoid,
}


def logits_to_probs(logits: np.ndarray, output: str = "softmax", temperature: float = 1.0) -> np.ndarray:
    """(N, K) float32 probabilities of (N, num_outputs) logits for the output kind."""
    scaled = np.asarray(logits, dtype=np.float32) / np.float32(temperature)
    return PROBABILITIES[output](scaled).astype(np.float32)
