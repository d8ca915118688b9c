"""What an evaluation measured and how far its numbers can be trusted.

Every evaluation.json starts with these fields, so a number can always be traced to the data
folder it came from and read with the right caution: a checkpoint selected on val (``best``)
and evaluated on that same val split gives an optimistic number; the test split, held out from
training and selection, gives the honest one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgclf.artifacts import data_name
from imgclf.data.folders import fingerprint_data

SELECTION_SPLIT = "val"      # train picks its best checkpoint on the val split of its own data
HELD_OUT_SPLIT = "test"


def selection_note(own_data: bool, split: str, checkpoint: str) -> tuple[bool, str | None]:
    """(optimistic, a short label) for an evaluation of ``checkpoint`` on ``split``."""
    if not own_data:
        return False, None
    if split == "train":
        return True, "training images (optimistic: the model was fitted on them)"
    if split == SELECTION_SPLIT and checkpoint == "best":
        return True, "selected on val (optimistic: the best checkpoint was chosen on these images)"
    if split == HELD_OUT_SPLIT:
        return False, "held out (used neither for training nor for choosing the checkpoint)"
    return False, None


def describe_evaluation(data: Path, own_data: bool, split: str, checkpoint: str,
                        step: Any = None) -> dict[str, Any]:
    """The leading fields of evaluation.json: which data, split and weights, and how trustworthy."""
    digest, source = fingerprint_data(data)
    optimistic, note = selection_note(own_data, split, checkpoint)
    return {"data": str(data), "data_name": data_name(data), "own_data": own_data, "split": split,
            "checkpoint": checkpoint, "step": step, "manifest_sha256": digest, "manifest_source": source,
            "selected_on": SELECTION_SPLIT if checkpoint == "best" else None, "optimistic": optimistic,
            "selection": note}


def describe_source(evaluation: dict[str, Any]) -> str:
    """One line naming an evaluation: '<split> of <data-name> (the run's own data), <checkpoint> weights'."""
    own = " (the run's own data)" if evaluation.get("own_data") else ""
    return (f"{evaluation.get('split', '?')} of {evaluation.get('data_name') or evaluation.get('data') or '?'}{own}, "
            f"{evaluation.get('checkpoint', '?')} weights")
