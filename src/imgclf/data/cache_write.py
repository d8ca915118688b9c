"""Writing the decode cache: one builder at a time, atomically, never trusting what is already there.

``load_or_build`` is the entry point: a valid file is used as it is (its rows checked against
the recorded sha256); anything else is rebuilt under an exclusive ``flock`` on ``<file>.lock``
into a temp file beside it, fsynced and renamed over the old one. A process that waited for
another builder re-checks the file first, so two runs started together decode once. Where locks
do not work, two builders each write their own temp file and the last rename wins: both files
are complete and identical, so every reader is still correct.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from imgclf import __version__
from imgclf.console import status, warn
from imgclf.data.cache import (ALIGN, MAGIC, READ_CHUNK, TEMP_MARK, CacheError, CacheFile, CacheSpec, Chunks,
                               Preprocess, data_offset, open_cache)
from imgclf.io import fsync_dir


@contextlib.contextmanager
def build_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path.lock`` for as long as the block runs (waits for another builder)."""
    try:
        import fcntl
    except ImportError:   # no flock: builders race, each writes its own temp file, renames are atomic
        yield
        return
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            status(f"another imgclf process is building {path.name}; waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # releases the lock; the lock file stays (deleting it would race)


def consume_chunks(chunks: Chunks, shape: tuple[int, int, int], sink: Callable[[int, np.ndarray], None],
                   preprocess: Preprocess | None = None) -> list[tuple[int, str]]:
    """Feed each chunk's rows (zeros for failures, ``preprocess`` applied to the rest) to ``sink(start, rows)``;
    returns the failures as (index, reason)."""
    rejected: list[tuple[int, str]] = []
    zeros = np.zeros(shape, dtype=np.uint8)
    for start, items in chunks:
        if not items:
            continue
        rows = np.stack([zeros if isinstance(r, str) else r for r in items])
        good = [k for k, r in enumerate(items) if not isinstance(r, str)]
        rejected += [(start + k, r) for k, r in enumerate(items) if isinstance(r, str)]
        if preprocess is not None and good:
            rows[good] = preprocess(rows[good])
        sink(start, rows)
    return rejected


def write_cache(path: Path, spec: CacheSpec, chunks: Chunks, preprocess: Preprocess | None = None,
                identity: dict[str, Any] | None = None, out: np.ndarray | None = None) -> CacheFile:
    """Write the rows produced by ``chunks`` into a temp file, fsync it and rename it to ``path``.

    ``out`` (N, C, S, S), when given, receives the rows too (no second read for memory mode).
    """
    identity = identity or spec.identity()
    for stale in path.parent.glob(f"{path.name}{TEMP_MARK}*"):   # left by a killed builder (we hold the lock)
        stale.unlink(missing_ok=True)
    temp = path.with_name(f"{path.name}{TEMP_MARK}{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with open(temp, "w+b") as f:
            f.seek(ALIGN)   # room for the header, written last (rows move up if it needs more)

            def sink(start: int, rows: np.ndarray) -> None:
                data = memoryview(np.ascontiguousarray(rows).reshape(-1))
                digest.update(data)
                f.write(data)
                if out is not None:
                    out[start:start + len(rows)] = rows

            rejected = consume_chunks(chunks, (spec.channels, spec.img_size, spec.img_size), sink, preprocess)
            header = {**identity, "data_sha256": digest.hexdigest(), "rejected": rejected,
                      "imgclf": __version__, "row_bytes": spec.row_bytes}
            _finish(f, header)
        os.replace(temp, path)
        fsync_dir(path.parent)
    finally:
        temp.unlink(missing_ok=True)
    return open_cache(path, spec, identity)


def _finish(f: BinaryIO, header: dict[str, Any]) -> None:
    """Put the header in front of the rows (moving them if it outgrew the reserved room); fsync."""
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    offset = data_offset(len(raw))
    reserved = ALIGN
    data_end = f.tell()
    if offset != reserved:
        _move_rows(f, reserved, offset, data_end - reserved)
    f.seek(0)
    f.write(MAGIC + struct.pack("<Q", len(raw)) + raw + b"\0" * (offset - 16 - len(raw)))
    f.truncate(offset + data_end - reserved)
    f.flush()
    os.fsync(f.fileno())


def _move_rows(f: BinaryIO, src: int, dst: int, size: int) -> None:
    """Move ``size`` bytes from ``src`` to ``dst`` inside ``f`` (back to front when moving up)."""
    step = READ_CHUNK
    fd = f.fileno()
    f.flush()
    starts = range(0, size, step)
    for start in (reversed(starts) if dst > src else starts):
        n = min(step, size - start)
        os.pwrite(fd, os.pread(fd, n, src + start), dst + start)


def load_or_build(path: Path, spec: CacheSpec, chunks: Callable[[], Chunks], preprocess: Preprocess | None = None,
                  read: bool = True) -> tuple[CacheFile, np.ndarray | None, bool]:
    """(cache file, its rows if ``read``, whether it was built now): a valid file is used, anything else rebuilt.

    The file list is fingerprinted once; a process that waited for another builder re-checks
    the file before building it again.
    """
    identity = spec.identity()

    def try_open() -> tuple[CacheFile, np.ndarray | None] | None:
        if not path.exists():
            return None
        try:
            cache = open_cache(path, spec, identity)
            rows = cache.read_all() if read else None
            if not read:
                cache.verify()
            return cache, rows
        except (CacheError, OSError) as err:
            warn(f"decode cache {path} is not usable ({err}); rebuilding it")
            return None

    found = try_open()
    if found is not None:
        return found[0], found[1], False
    with build_lock(path):
        found = try_open()
        if found is not None:
            return found[0], found[1], False
        out = np.empty((len(spec.paths), spec.channels, spec.img_size, spec.img_size), np.uint8) if read else None
        cache = write_cache(path, spec, chunks(), preprocess, identity, out)
    return cache, out, True
