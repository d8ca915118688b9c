"""Which samples the model gets wrong, ranked, and which of them are probably mislabelled.

Label-issue flags follow confident learning (Northcutt et al., 2021): the threshold of class
j is the mean probability of j over the samples labelled j (how sure the model is when it is
right about j). A sample labelled i is a likely label error when it is misclassified and some
other class j reaches its own threshold; those are ranked by self-confidence p_i, lowest first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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


def class_thresholds(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(K,) t_j = mean p_j over samples labelled j; +inf for a class without samples."""
    targets, probs = np.asarray(targets), np.asarray(probs, dtype=np.float64)
    num_classes = probs.shape[1]
    counts = np.bincount(targets, minlength=num_classes)
    sums = np.zeros(num_classes)
    np.add.at(sums, targets, probs[np.arange(len(targets)), targets])
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)


@dataclass(frozen=True)
class LabelIssues:
    """Confident-learning flags: ``flags`` (N,) bool, ``suggested`` (N,) class (-1 if none), ``order``."""

    flags: np.ndarray
    suggested: np.ndarray
    self_confidence: np.ndarray
    order: np.ndarray  # indices of the flagged samples, lowest self-confidence first


def find_label_issues(targets: np.ndarray, probs: np.ndarray) -> LabelIssues:
    """Flag misclassified samples where another class reaches its per-class threshold."""
    targets, probs = np.asarray(targets), np.asarray(probs, dtype=np.float64)
    rows = np.arange(len(targets))
    above = probs >= class_thresholds(targets, probs)[None, :]
    above[rows, targets] = False
    candidate_probs = np.where(above, probs, -1.0)
    suggested = np.where(above.any(axis=1), candidate_probs.argmax(axis=1), -1)
    flags = (suggested >= 0) & (predictions(probs) != targets)
    suggested = np.where(flags, suggested, -1)
    self_confidence = true_probs(targets, probs)
    flagged = np.flatnonzero(flags)
    order = flagged[np.argsort(self_confidence[flagged], kind="mergesort")]
    return LabelIssues(flags, suggested, self_confidence, order)


def safe_name(text: str) -> str:
    """``text`` usable as one file or folder name: runs of other characters become ``_``."""
    return UNSAFE_CHARS.sub("_", text).strip("._") or "image"


def _truncate_utf8(text: str, max_bytes: int) -> str:
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
    return head + (_truncate_utf8(safe_name(path.stem), room) or "image") + tail
