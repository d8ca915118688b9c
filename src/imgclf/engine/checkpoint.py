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
TEMPERATURE_KEY = "temperature"   # calibration temperature in the metadata (imgclf calibrate); absent = 1
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
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    _save_tensors(path, tensors, {META_KEY: json.dumps(meta)})


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


def read_temperature(meta: dict[str, Any]) -> float:
    """The calibration temperature of a checkpoint's metadata: the one accessor every reader uses (1.0 if none)."""
    value = meta.get(TEMPERATURE_KEY)
    return 1.0 if value is None else float(value)


def check_temperature(meta: dict[str, Any]) -> str | None:
    """A problem with the metadata's temperature (not a finite number > 0), or None."""
    value = meta.get(TEMPERATURE_KEY)
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                         and 0 < value < float("inf")):
        return None
    return f"{TEMPERATURE_KEY!r} must be a finite number > 0, got {value!r}"[:120]


def update_metadata(path: Path, changes: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a weights file with ``changes`` merged into its imgclf metadata; returns the new metadata.

    A value of None removes the key. The tensors are copied unchanged (same names, dtypes and
    bytes), every other metadata entry is kept, and the file is replaced atomically: a crash
    leaves the old file or the new one.
    """
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        meta = json.loads(raw.get(META_KEY, "{}"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a valid safetensors checkpoint ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: metadata is not a JSON object")
    meta.update(changes)
    meta = {k: v for k, v in meta.items() if v is not None}
    raw[META_KEY] = json.dumps(meta)
    _save_tensors(path, tensors, raw)
    return meta


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        with _write_errors_as_oserror(tmp):
            save_file(tensors, str(tmp), metadata=metadata)


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
