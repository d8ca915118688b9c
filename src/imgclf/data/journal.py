"""Restartable ``prepare``: a journal of the inputs already decoded, verified and staged.

``prepare`` works in a fixed hidden folder beside DST (``.DST.imgclf-partial``). Each input that
has been decoded gets one JSON line in ``journal.jsonl`` once its staged file is complete: the
source's size and mtime, the pixel digest, size and notes, and the staged file's size and sha256
(or the reason it was rejected). When ``prepare`` is interrupted (Ctrl-C, a kill, a crash) the
folder stays; the next run with the same SRC and decode settings reuses every entry whose source
is unchanged and whose staged file still hashes the same, and decodes only the rest. Everything
after decoding (deduplication, split, names, manifest) is recomputed from the outcomes, so the
result is byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from imgclf import __version__
from imgclf.io import file_sha256

JOURNAL = "journal.jsonl"
STAGING = ".staging"
PARTIAL_SUFFIX = "imgclf-partial"
FSYNC_EVERY_S = 5.0


def partial_folder(dst: Path) -> Path:
    return dst.parent / f".{dst.name}.{PARTIAL_SUFFIX}"


def staged_stem(key: str) -> str:
    """The staged file name of an input (independent of its position, so it survives a changed SRC listing)."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def source_stamp(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def open_partial(dst: Path, settings: dict[str, Any]) -> Path:
    """The partial folder for ``dst``: kept when its journal was written with ``settings``, else emptied.

    Anything but the journal and the staged files (a half-built output tree) is always removed.
    """
    folder = partial_folder(dst)
    header = {"journal": 1, "imgclf": __version__, "settings": settings}
    if read_header(folder / JOURNAL) != header:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.name not in (JOURNAL, STAGING):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    (folder / STAGING).mkdir(exist_ok=True)
    if not (folder / JOURNAL).exists():
        (folder / JOURNAL).write_text(json.dumps(header, sort_keys=True) + "\n", encoding="utf-8")
    return folder


def read_header(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.loads(f.readline())
    except (OSError, ValueError):
        return None


def load_entries(folder: Path, keys: Sequence[str], sources: Sequence[Path]) -> dict[int, dict[str, Any]]:
    """Task index -> journal entry, for every entry still valid (source unchanged, staged file intact)."""
    index_of = {key: i for i, key in enumerate(keys)}
    found: dict[int, dict[str, Any]] = {}
    with open(folder / JOURNAL, encoding="utf-8") as f:
        next(f, None)
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:   # the last line of a killed run may be cut short
                break
            i = index_of.get(entry.get("key"))
            if i is not None and entry.get("source") == source_stamp(sources[i]) and _staged_ok(folder, entry):
                found[i] = entry
    return found


def _staged_ok(folder: Path, entry: dict[str, Any]) -> bool:
    if entry.get("error"):
        return True
    path = folder / STAGING / str(entry.get("staged", ""))
    try:
        return path.stat().st_size == entry["staged_size"] and file_sha256(path) == entry["staged_sha256"]
    except (OSError, KeyError):
        return False


class JournalWriter:
    """Appends one line per finished input; flushed as it goes, fsynced every few seconds."""

    def __init__(self, folder: Path) -> None:
        self.file: TextIO = open(folder / JOURNAL, "a", encoding="utf-8")
        self.synced = time.monotonic()

    def record(self, key: str, source: Path, outcome: Any) -> None:
        entry = {"key": key, "source": source_stamp(source), **asdict(outcome)}
        if not outcome.error:
            staged = Path(outcome.staged)
            entry.update(staged=staged.name, staged_size=staged.stat().st_size, staged_sha256=file_sha256(staged))
        self.file.write(json.dumps(entry, sort_keys=True) + "\n")
        self.file.flush()
        if time.monotonic() - self.synced > FSYNC_EVERY_S:
            os.fsync(self.file.fileno())
            self.synced = time.monotonic()

    def close(self) -> None:
        self.file.close()
