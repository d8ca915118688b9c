"""Checkpoints that cannot execute code when loaded, written atomically.

* ``*.safetensors``: model weights + a JSON metadata string (what is needed to
  rebuild the model and its eval preprocessing). No pickle anywhere.
* ``last.state.pt``: resume state (model, optimizer, counters) saved with
  ``torch.save`` and loaded only with ``torch.load(weights_only=True)``, which
  refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from imgclf.errors import CheckpointError
from imgclf.io import atomic_path

META_KEY = "imgclf"
LOW_SPACE_BYTES = 4 * 1024 * 1024   # a failed write with less free space than this is reported as disk full


@contextlib.contextmanager
def _write_errors_as_oserror(tmp: Path) -> Iterator[None]:
    """torch.save and safetensors report a failed write (disk full...) as RuntimeError & co.

    Turn those into OSError, so atomic_path removes the temp file and reports
    "could not write <file>: <reason>" instead of a traceback.
    """
    try:
        yield
    except OSError:
        raise
    except Exception as err:  # RuntimeError (torch), SafetensorError (safetensors)
        stat = os.statvfs(tmp.parent)
        if stat.f_bavail * stat.f_frsize < LOW_SPACE_BYTES:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from err
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OSError(errno.EIO, f"{first[:200]} (check free space and permissions)") from err


def save_weights(path: Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        with _write_errors_as_oserror(tmp):
            save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, metadata) of a safetensors file; CheckpointError naming the file otherwise."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw_meta = (f.metadata() or {}).get(META_KEY, "{}")
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        meta = json.loads(raw_meta)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a valid safetensors checkpoint ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: metadata is not a JSON object")
    return tensors, meta


def save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        with _write_errors_as_oserror(tmp):
            torch.save(state, tmp)


def load_state(path: Path) -> dict[str, Any]:
    """Resume state, loaded with weights_only=True (no code can run); never falls back."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no resume state here (was the run saved at least once?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, zip errors...
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: cannot be loaded safely ({reason[:200]})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path}: not an imgclf resume state")
    return state
