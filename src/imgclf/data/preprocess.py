"""``--preprocess``: an enhancement applied to uint8 batches before the model, in training and prediction."""

from __future__ import annotations

from imgclf.data.transforms import Preprocess
from imgclf.errors import UsageError


def make_preprocess(spec: str) -> Preprocess | None:
    """``none`` -> None; ``name`` or ``name:param=value,...`` -> a function on uint8 (B, C, H, W)."""
    if spec in ("", "none"):
        return None
    try:
        from imgclf.analysis import enhancements
    except ImportError:
        raise UsageError("--preprocess: enhancements are not available in this build") from None
    return enhancements.make_preprocess(spec)
