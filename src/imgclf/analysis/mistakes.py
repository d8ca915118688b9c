"""Which samples the model gets wrong, ranked by loss, and readable names for their copies.

Which of them are probably mislabelled is decided in :mod:`imgclf.analysis.label_issues`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from imgclf.analysis.metrics import per_sample_loss, predictions, true_probs

MAX_NAME_BYTES = 200
UNSAFE_CHARS = re.compile(r"[^\w.\-]+")  # keeps letters of any script, digits, _ . -


def rank_mistakes(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Indices of the misclassified samples, highest loss first (ties: original order)."""
    wrong = np.flatnonzero(predictions(probs) != np.asarray(targets))
    losses = per_sample_loss(targets, probs)[wrong]
    return wrong[np.argsort(-losses, kind="mergesort")]


def margins(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(N,) p_pred - p_true: 0 when right, up to 1 when confidently wrong."""
    probs = np.asarray(probs)
    return probs.max(axis=1) - true_probs(targets, probs)


def safe_name(text: str) -> str:
    """``text`` usable as one file or folder name: runs of other characters become ``_``."""
    return UNSAFE_CHARS.sub("_", text).strip("._") or "image"


def truncate_utf8(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[:max(max_bytes, 0)].decode("utf-8", errors="ignore")


def copy_name(rank: int, path: str | Path, true_prob: float, predicted: str, pred_prob: float) -> str:
    """``<rank:04d>_<stem>__p<true-prob>_to_<predicted>_p<pred-prob>.<ext>``, sanitised, <= 200 bytes.

    The stem is shortened first, so the rank and the probabilities always survive.
    """
    path = Path(path)
    ext = safe_name(path.suffix.lstrip(".").lower()) if path.suffix else "png"
    tail = f"__p{true_prob:.3f}_to_{safe_name(predicted)[:60]}_p{pred_prob:.3f}.{ext}"
    head = f"{rank:04d}_"
    room = MAX_NAME_BYTES - len(head.encode()) - len(tail.encode())
    return head + (truncate_utf8(safe_name(path.stem), room) or "image") + tail
