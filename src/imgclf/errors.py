"""Exceptions that carry a user-facing message and an exit code.

The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``:
2 for a usage problem (a bad flag or value), 1 when the command itself failed.
"""

from __future__ import annotations

from pathlib import Path


class ImgclfError(Exception):
    """A failure the user can act on; the message says what to do next."""

    exit_code = 1


class UsageError(ImgclfError):
    """Bad flags or values; nothing was done."""

    exit_code = 2


class ImageDecodeError(ImgclfError):
    """A file that is not a usable image. Always names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CheckpointError(ImgclfError):
    """A checkpoint or run folder that cannot be loaded safely."""
