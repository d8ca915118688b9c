"""Atomic file writes: a temp file in the same folder, fsync, then rename.

A crash at any moment leaves either the old file or the new one, never a
half-written one. Every artifact imgclf writes goes through here.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from imgclf.errors import ImgclfError

TMP_PREFIX = ".imgclf-tmp-"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success fsync it and rename it over ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
    except OSError as err:  # read-only file system, no permission, disk full...
        raise ImgclfError(f"could not write {path}: {err.strerror or err}") from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes 0600 files and some writers replace the temp file: set the mode at the end
        os.chmod(tmp, 0o666 & ~process_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ImgclfError(f"could not write {path}: {err.strerror or err}") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield a hidden temp folder beside ``path``; on success it is renamed to ``path``.

    A crash or an error leaves no half-written folder: the temp folder is removed. An existing
    ``path`` is swapped out (two renames) only with ``replace``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=path.parent))
    except OSError as err:
        raise ImgclfError(f"could not write {path}: {err.strerror or err}") from err
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                os.chmod(file, 0o666 & ~process_umask())
                with open(file, "rb+") as f:
                    os.fsync(f.fileno())
        os.chmod(tmp, 0o777 & ~process_umask())
        if path.exists() and not replace:
            raise ImgclfError(f"{path} already exists; pass --force to replace it")
        old = tmp.with_name(tmp.name + "-old")
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
        fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ImgclfError(f"could not write {path}: {err.strerror or err}") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@functools.cache
def process_umask() -> int:
    """The process's umask, read once: from /proc on Linux (no change to it), else set and restored once."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_inside(path: str | Path, root: str | Path) -> bool:
    """Whether the real path of ``path`` is the real path of ``root`` or below it (links resolved)."""
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@contextlib.contextmanager
def single_writer(lock_path: str | Path, what: str) -> Iterator[None]:
    """Be the only process writing ``what`` while the block runs: an exclusive ``flock`` on ``lock_path``.

    The lock file holds the writer's PID, so a second writer stops with "WHAT is being written
    by process N". The kernel releases a flock when its process dies, so a lock file left by a
    killed process is free again: it is taken over (and said so), never waited for or deleted.
    """
    import fcntl

    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ImgclfError(f"{what} is being written by process {_lock_pid(fd) or '(unknown)'}; wait for it "
                              "to finish (or stop it) and try again") from None
        previous = _lock_pid(fd)
        if previous:
            from imgclf.console import status

            status(f"{what}: taking over the lock left by process {previous}, which stopped without releasing it")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)   # released cleanly: an empty lock file
    finally:
        os.close(fd)


def _lock_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ImgclfError(f"{path}: not found") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ImgclfError(f"{path}: not valid JSON ({err})") from err


def remove_stale_temps(folder: str | Path) -> int:
    """Delete temp files left by a crash in ``folder``; returns how many."""
    count = 0
    folder = Path(folder)
    if folder.is_dir():
        for tmp in folder.glob(TMP_PREFIX + "*"):
            tmp.unlink(missing_ok=True)
            count += 1
    return count


def refuse_overwrite(path: str | Path, force: bool, flag: str = "--force") -> None:
    """Raise unless ``path`` is free or the user passed ``--force``."""
    if Path(path).exists() and not force:
        raise ImgclfError(f"{path} already exists; pass {flag} to overwrite it")


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
