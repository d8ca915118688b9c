"""The persistent decode cache: the pixels a run trains on, decoded and resized once, kept on disk.

This module is the file format, where caches live, and reading; ``cache_write`` builds them.

One file per (file list, resolution, channels, preprocess) of a split:

    MAGIC (8 bytes) | header length (8 bytes, little-endian) | header JSON | zeros to 4 KiB | N rows

Each row is one image as (C, S, S) uint8, in the order of the file list (a file that could not be
decoded keeps a row of zeros and is listed in the header with its reason). The header names
everything the pixels depend on: the decode geometry, size, channels, ``--preprocess``, and a
fingerprint of the file list (relative path, size and mtime of every file), plus the sha256 of
the rows. A file is used only when every field matches and the rows hash to the recorded digest
(checked on every open: a cache is never trusted); anything else is rebuilt.

"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


MAGIC = b"IMGCLFC1"
FORMAT = 1
ALIGN = 4096
READ_CHUNK = 32 << 20
FOLDER_IN_DATA = ".imgclf-cache"
TEMP_MARK = ".tmp-"

# (start index, list of rows (C, S, S) uint8 or the reason a file failed) -> consumed in order
Chunks = Iterator[tuple[int, list[Any]]]
Preprocess = Callable[[np.ndarray], np.ndarray]   # uint8 (B, C, S, S) -> uint8 (B, C, S, S)


class CacheError(Exception):
    """A cache file that cannot be used, with the reason (it is then rebuilt)."""


@dataclass(frozen=True)
class CacheSpec:
    """What a cache file must hold; every field is compared with the file's header before use."""

    split: str
    paths: tuple[Path, ...]
    root: Path                 # paths are recorded relative to this (the data folder)
    img_size: int
    channels: int
    preprocess: str            # the --preprocess spec ("none" = decoded pixels)
    geometry: str              # imgclf.data.loading.GEOMETRY: how a file becomes (C, S, S)

    @property
    def row_bytes(self) -> int:
        return self.channels * self.img_size * self.img_size

    @property
    def data_bytes(self) -> int:
        return self.row_bytes * len(self.paths)

    def file_name(self) -> str:
        tag = "none" if self.preprocess in ("", "none") else hashlib.sha256(self.preprocess.encode()).hexdigest()[:12]
        return f"{self.split}-{self.img_size}px-{self.channels}c-{tag}.u8"

    def identity(self) -> dict[str, Any]:
        """The header fields that must match exactly."""
        return {"format": FORMAT, "geometry": self.geometry, "split": self.split, "img_size": self.img_size,
                "channels": self.channels, "preprocess": self.preprocess, "num_files": len(self.paths),
                "files_sha256": files_fingerprint(self.paths, self.root)}


def files_fingerprint(paths: Sequence[Path], root: Path) -> str:
    """sha256 over (relative path, size, mtime in ns) of every file: any change, addition or removal shows."""
    digest = hashlib.sha256()
    prefix = os.path.join(os.path.abspath(root), "")
    for path in paths:
        try:
            st = os.stat(path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError as err:
            stamp = f"unreadable:{err.errno}"
        full = os.path.abspath(path)   # relpath's answer without its per-call normalisation of root
        rel = full[len(prefix):] if full.startswith(prefix) else os.path.relpath(full, root)
        digest.update(f"{rel}\0{stamp}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


# --- where caches live ------------------------------------------------------------------------

def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/imgclf`` or ``~/.cache/imgclf``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imgclf"


def _keyed_name(data_root: Path) -> str:
    """``<folder name>-<hash of its real path>``: the name of a data folder's caches outside it."""
    real = os.path.realpath(data_root)
    return f"{Path(real).name or 'data'}-{hashlib.sha256(real.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}"


def cache_folder(data_root: Path, override: Path | None = None) -> Path | None:
    """Where the caches of ``data_root`` live; None when no candidate is writable.

    A folder written by ``imgclf prepare`` is ours: ``DATA/.imgclf-cache``. Any other data folder
    (a user's own tree, a read-only share) is never written into: the caches go to
    ``~/.cache/imgclf/decoded/<name>-<hash of its real path>`` (or under ``--cache-dir``).
    """
    from imgclf.data.prepare import written_by_us

    keyed = _keyed_name(data_root)
    candidates = [override / keyed] if override is not None else []
    if override is None and written_by_us(Path(data_root)) and os.access(data_root, os.W_OK):
        candidates.append(Path(data_root) / FOLDER_IN_DATA)
    if override is None:
        candidates.append(user_cache_root() / "decoded" / keyed)
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK | os.X_OK):
            return folder
    return None


def existing_cache_folders(data_root: Path) -> list[Path]:
    """The folders :func:`cache_folder` may have put ``data_root``'s caches in that exist now (nothing is created)."""
    candidates = (Path(data_root) / FOLDER_IN_DATA, user_cache_root() / "decoded" / _keyed_name(data_root))
    return [folder for folder in candidates if folder.is_dir()]


def cached_rows(spec: CacheSpec) -> np.ndarray | None:
    """Every row of a valid cache file for exactly ``spec`` that a training run left, or None.

    Read-only: nothing is built or written. A file with any rejected image is not used (the
    caller decodes, so the undecodable files are reported by name), nor is a stale, truncated
    or corrupt one (the header is compared field by field and the pixels against their digest).
    """
    for folder in existing_cache_folders(spec.root):
        path = folder / spec.file_name()
        if not path.is_file():
            continue
        try:
            cache = open_cache(path, spec)
            if not cache.rejected:
                return cache.read_all()
        except (CacheError, OSError):
            continue
    return None


def free_bytes(folder: Path) -> int:
    import shutil

    return shutil.disk_usage(folder).free


# --- reading --------------------------------------------------------------------------------

@dataclass
class CacheFile:
    """An opened, verified cache file: rows are read with ``pread`` (no mapping, so no RSS growth)."""

    path: Path
    header: dict[str, Any]
    data_offset: int
    row_bytes: int
    shape: tuple[int, int, int]                              # (C, S, S)
    rejected: dict[int, str] = field(default_factory=dict)   # file index -> reason

    @property
    def num_rows(self) -> int:
        return int(self.header["num_files"])

    def ok_indices(self) -> list[int]:
        return [i for i in range(self.num_rows) if i not in self.rejected]

    def read_rows(self, fd: int, rows: Sequence[int], out: np.ndarray) -> None:
        """Rows into ``out`` (len(rows), C, S, S); consecutive rows are read with one call."""
        flat = out.reshape(len(rows), self.row_bytes)
        i = 0
        while i < len(rows):
            j = i + 1
            while j < len(rows) and rows[j] == rows[j - 1] + 1:
                j += 1
            _pread_into(fd, memoryview(flat[i:j]).cast("B"), self.data_offset + rows[i] * self.row_bytes)
            i = j

    def read_all(self) -> np.ndarray:
        """Every row (N, C, S, S), checked against the recorded digest while reading."""
        out = np.empty((self.num_rows, *self.shape), dtype=np.uint8)
        with open(self.path, "rb") as f:
            digest = _hash_into(f, self.data_offset, memoryview(out.reshape(-1)), self.path)
        if digest != self.header["data_sha256"]:
            raise CacheError("its pixels do not match the recorded checksum (corrupt)")
        return out

    def verify(self) -> None:
        """Hash every row without keeping them (disk mode)."""
        with open(self.path, "rb") as f:
            digest = _hash_into(f, self.data_offset, None, self.path, self.num_rows * self.row_bytes)
        if digest != self.header["data_sha256"]:
            raise CacheError("its pixels do not match the recorded checksum (corrupt)")


def _pread_into(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise CacheError("the file is shorter than its header says (truncated)")
        done += got


def _hash_into(f: BinaryIO, offset: int, out: memoryview | None, path: Path, size: int = 0) -> str:
    """sha256 of ``size`` (or len(out)) bytes from ``offset``; the bytes land in ``out`` when given."""
    total = len(out) if out is not None else size
    digest = hashlib.sha256()
    buffer = bytearray(min(READ_CHUNK, max(total, 1))) if out is None else None
    f.seek(offset)
    done = 0
    while done < total:
        n = min(READ_CHUNK, total - done)
        view = out[done:done + n] if out is not None else memoryview(buffer)[:n]   # type: ignore[arg-type]
        got = f.readinto(view)
        if not got:
            raise CacheError(f"the file is shorter than its header says (truncated at {offset + done} bytes)")
        digest.update(view[:got])
        done += got
    return digest.hexdigest()


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """(header, data offset) of a cache file; CacheError when it is not one."""
    with open(path, "rb") as f:
        head = f.read(16)
        if len(head) < 16 or head[:8] != MAGIC:
            raise CacheError("not an imgclf cache file (bad magic)")
        (length,) = struct.unpack("<Q", head[8:])
        if length > 64 << 20:
            raise CacheError("header length is implausible")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise CacheError(f"unreadable header ({err})") from None
    if not isinstance(header, dict):
        raise CacheError("unreadable header")
    return header, data_offset(length)


def data_offset(header_length: int) -> int:
    return -(-(16 + header_length) // ALIGN) * ALIGN


def open_cache(path: Path, spec: CacheSpec, identity: dict[str, Any] | None = None) -> CacheFile:
    """The cache file at ``path`` if its header matches ``spec`` and its size is right; else CacheError.

    The pixel checksum is checked by :meth:`CacheFile.read_all` or :meth:`CacheFile.verify`.
    """
    header, offset = read_header(path)
    identity = identity or spec.identity()
    for key, value in identity.items():
        if header.get(key) != value:
            raise CacheError(f"stale: {key} differs ({'the files changed' if key == 'files_sha256' else value})")
    expected = offset + spec.data_bytes
    actual = path.stat().st_size
    if actual != expected:
        raise CacheError(f"its size is {actual} bytes, not the {expected} of its header (truncated or padded)")
    rejected = header.get("rejected")
    if not isinstance(rejected, list) or not isinstance(header.get("data_sha256"), str):
        raise CacheError("unreadable header")
    return CacheFile(path, header, offset, spec.row_bytes, (spec.channels, spec.img_size, spec.img_size),
                     {int(i): str(r) for i, r in rejected})
