"""Decode, deduplicate, split and write a raw data set: the engine of ``imgclf prepare``.

Everything is built in a hidden temp folder beside DST and moved into place at
the end, so a crash never leaves a half-prepared DST, and SRC is only ever read.
Decoding runs in worker processes; each worker writes its converted file into a
staging folder and returns only metadata (pixel digest, size), so memory stays flat.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from imgclf.console import progress, status
from imgclf.data.decode import Decoded, convert_mode, decode_image
from imgclf.data.discover import Sample
from imgclf.data.journal import (JOURNAL, STAGING, JournalWriter, load_entries, open_partial,
                                 partial_folder, staged_stem)
from imgclf.data.neardup import hash_distance, perceptual_hash
from imgclf.errors import ImageDecodeError, ImgclfError
from imgclf.io import file_sha256, is_inside

KEEP_FORMATS = {"JPEG": (".jpg", ".jpeg", ".jpe"), "PNG": (".png",), "BMP": (".bmp",),
                "GIF": (".gif",), "TIFF": (".tif", ".tiff"), "WEBP": (".webp",)}
SERIAL_BELOW = 200  # fewer files than this decode in-process: starting workers costs more than it saves
MULTI_LABEL_DIR = "images"


@dataclass(frozen=True)
class DecodeTask:
    index: int
    source: str
    mode: str
    format: str
    jpg_quality: int
    max_pixels: int
    staging: str
    stem: str   # staged file name without suffix (see imgclf.data.journal.staged_stem)


@dataclass(frozen=True)
class Outcome:
    """What decoding one input produced: a staged file and its metadata, or the reason it failed."""

    index: int
    digest: str = ""
    width: int = 0
    height: int = 0
    staged: str = ""
    notes: tuple[str, ...] = ()
    error: str = ""
    staged_size: int = 0
    staged_sha256: str = ""
    phash: str = ""   # 64-bit perceptual hash, hex (imgclf.data.neardup)


def pixel_digest(img: Image.Image) -> str:
    """sha256 of mode, size and pixel bytes: equal iff the decoded images are identical."""
    h = hashlib.sha256(f"{img.mode}:{img.width}x{img.height}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def _save_png(img: Image.Image, path: Path, quality: int) -> None:
    img.save(path, "PNG", icc_profile=None)


def _save_jpg(img: Image.Image, path: Path, quality: int) -> None:
    if img.mode not in ("L", "RGB"):  # JPEG has no 16-bit grey
        img = convert_mode(img, "gray")
    img.save(path, "JPEG", quality=quality, icc_profile=None)


ENCODERS: dict[str, tuple[str, Callable[[Image.Image, Path, int], None]]] = {
    "png": (".png", _save_png),
    "jpg": (".jpg", _save_jpg),
}


def write_decoded(decoded: Decoded, source: Path, fmt: str, quality: int, stem: Path) -> Path:
    """Write ``decoded`` as ``stem`` + suffix; ``keep`` copies the original bytes when nothing changed."""
    suffix = source.suffix.lower()
    if fmt == "keep" and not decoded.notes and suffix in KEEP_FORMATS.get(decoded.format, ()):
        out = stem.with_suffix(suffix)
        shutil.copyfile(source, out)
        return out
    ext, save = ENCODERS["png" if fmt == "keep" else fmt]
    out = stem.with_suffix(ext)
    save(decoded.image, out, quality)
    return out


def decode_one(task: DecodeTask) -> Outcome:
    """Decode, convert and stage one file (runs in a worker process; never raises on bad input)."""
    source = Path(task.source)
    try:
        decoded = decode_image(source, task.mode, task.max_pixels)  # type: ignore[arg-type]
    except ImageDecodeError as err:
        return Outcome(task.index, error=err.reason)
    staged = write_decoded(decoded, source, task.format, task.jpg_quality, Path(task.staging) / task.stem)
    img = decoded.image
    return Outcome(task.index, pixel_digest(img), img.width, img.height, str(staged), tuple(decoded.notes),
                   staged_size=staged.stat().st_size, staged_sha256=file_sha256(staged), phash=perceptual_hash(img))


def _start_method() -> multiprocessing.context.BaseContext:
    """``fork`` from a process that runs no other thread and has not loaded torch (the ``imgclf prepare``
    command: workers start in ~7 ms instead of ~70); else ``forkserver`` (a library caller's threads or
    OpenMP pool must not be forked), or ``spawn`` where there is no forkserver."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1 and "torch" not in sys.modules:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def decode_all(tasks: Sequence[DecodeTask], workers: int, total: int = 0) -> Iterator[Outcome]:
    """:func:`decode_one` over ``tasks`` (results in order), on ``workers`` processes when it pays off.

    ``total`` (default: len(tasks)) is what the progress bar counts to, so a resumed run shows
    the files already checked as done.
    """
    workers = workers or os.cpu_count() or 1
    bar = dict(total=total or len(tasks), initial=(total or len(tasks)) - len(tasks), desc="decoding", unit="img")
    if workers == 1 or len(tasks) < SERIAL_BELOW:
        yield from progress(map(decode_one, tasks), **bar)
        return
    chunk = max(1, min(64, len(tasks) // (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=_start_method()) as pool:
        yield from progress(pool.map(decode_one, tasks, chunksize=chunk), **bar)


def decode_journaled(samples: Sequence[Sample], keys: Sequence[str], work: Path, mode: str, fmt: str,
                     jpg_quality: int, max_pixels: int, workers: int) -> list[Outcome]:
    """One outcome per sample: reused from the journal of an interrupted run when still valid, else decoded
    now (and journaled); a failure to write the output becomes a clear error."""
    staging = work / STAGING
    reused = {i: Outcome(i, e["digest"], e["width"], e["height"], str(staging / e["staged"]) if not e["error"] else "",
                         tuple(e["notes"]), e["error"], e["staged_size"], e["staged_sha256"], e.get("phash", ""))
              for i, e in load_entries(work, keys, [s.source for s in samples]).items()
              if e["error"] or e.get("phash")}   # an entry without a perceptual hash is decoded again
    if reused:
        status(f"continuing an interrupted prepare: {len(reused)} of {len(samples)} files already checked")
    tasks = [DecodeTask(i, str(s.source), mode, fmt, jpg_quality, max_pixels, str(staging), staged_stem(keys[i]))
             for i, s in enumerate(samples) if i not in reused]
    journal = JournalWriter(work)
    try:
        for outcome in decode_all(tasks, workers, total=len(samples)):
            journal.record(keys[outcome.index], samples[outcome.index].source, outcome)
            reused[outcome.index] = outcome
    except OSError as err:
        raise ImgclfError(f"could not write into {work.parent}: {err.strerror or err} "
                          "(check free space and permissions)") from err
    finally:
        journal.close()
    return [reused[i] for i in range(len(samples))]


def assign_names(entries: Sequence[tuple[str, str, str, str]]) -> dict[str, str]:
    """key -> relative destination for (key, folder, stem, ext) entries, collision-free.

    Entries are taken in key order; the first keeps ``stem.ext``, later ones with the
    same name in the same folder (compared case-insensitively, for macOS and Windows)
    get ``stem-<8 hex of sha256(key)>.ext``.
    """
    taken: set[str] = set()
    names: dict[str, str] = {}
    for key, folder, stem, ext in sorted(entries):
        tag = hashlib.sha256(key.encode()).hexdigest()
        candidates = [f"{_fit(stem, ext, 0)}{ext}"] + [f"{_fit(stem, ext, n + 1)}-{tag[:n]}{ext}"
                                                      for n in (8, 12, 16, 64)]
        for name in candidates:
            rel = f"{folder}/{name}"
            if rel.lower() not in taken:
                break
        taken.add(rel.lower())
        names[key] = rel
    return names


MAX_NAME_BYTES = 255  # longest file name on ext4, APFS, NTFS...


def _fit(stem: str, ext: str, extra: int) -> str:
    """``stem`` cut (at a character boundary) so that stem + extra bytes + ext fits in one file name."""
    room = MAX_NAME_BYTES - len(ext.encode()) - extra
    data = stem.encode("utf-8", "surrogateescape")
    if len(data) <= room:
        return stem
    return data[:room].decode("utf-8", "ignore")


# --- destination safety -------------------------------------------------------------

OUTPUT_NAMES = frozenset({"train", "val", "test", "manifest.csv", "prepare_report.json"})
REPORT_NAME = "prepare_report.json"
REPORT_TOOL = "imgclf prepare"


def written_by_us(dst: Path) -> bool:
    """True when ``dst`` holds a prepare_report.json written by imgclf prepare."""
    try:
        return json.loads((dst / REPORT_NAME).read_text(encoding="utf-8")).get("tool") == REPORT_TOOL
    except (OSError, ValueError, AttributeError):
        return False


def check_destination(dst: Path, src_root: Path | None, protected: Sequence[Path], force: bool) -> None:
    """Refuse a DST inside SRC, a DST that contains any input, or a foreign non-empty DST."""
    if src_root is not None and is_inside(dst, src_root):
        raise ImgclfError(f"DST {dst} is inside SRC {src_root}; choose an output folder outside SRC "
                          "(imgclf never writes into SRC)")
    for path in protected:
        if is_inside(path, dst):
            raise ImgclfError(f"DST {dst} contains the input {path}; choose an output folder that holds "
                              "none of the inputs")
    if dst.exists() and not dst.is_dir():
        raise ImgclfError(f"DST {dst} is a file; choose a folder")
    if dst.is_dir() and any(dst.iterdir()) and not written_by_us(dst) and not force:
        raise ImgclfError(f"DST {dst} is not empty and was not written by imgclf prepare; choose a new "
                          "folder, or pass --force to replace train/, val/, test/, manifest.csv and "
                          "prepare_report.json in it (other files are kept)")


def lock_path(dst: Path) -> Path:
    """The lock file of the one process writing ``dst``: beside it, since the swap replaces DST itself."""
    return dst.parent / f".{dst.name}.lock"


def make_workspace(dst: Path, settings: dict[str, Any]) -> Path:
    """The hidden work folder beside ``dst`` (same file system, so the final move is a rename).

    It keeps the journal and staged files of an interrupted run with the same ``settings``
    (see imgclf.data.journal); leftovers of older layouts are removed.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    for stale in dst.parent.glob(f".{dst.name}.imgclf-*"):
        if stale != partial_folder(dst):
            shutil.rmtree(stale, ignore_errors=True)
    return open_partial(dst, settings)


def install_output(work: Path, dst: Path) -> None:
    """Move the finished ``work`` folder into place as ``dst``, replacing only imgclf's own outputs."""
    if not dst.exists():
        os.rename(work, dst)
        return
    ours = written_by_us(dst)
    entries = {p.name for p in dst.iterdir()}
    trash = Path(tempfile.mkdtemp(prefix=f".{dst.name}.imgclf-old-", dir=dst.parent))
    if ours and entries <= OUTPUT_NAMES:  # whole-folder swap: two renames
        os.rename(dst, trash / dst.name)
        os.rename(work, dst)
    else:  # foreign files live here (--force): replace our entries one by one, keep the rest
        new = {p.name for p in work.iterdir()}
        for name in sorted((OUTPUT_NAMES if ours else new) & entries):
            os.rename(dst / name, trash / name)
        for name in sorted(new):
            os.rename(work / name, dst / name)
        os.rmdir(work)
    shutil.rmtree(trash, ignore_errors=True)


# --- the pipeline ---------------------------------------------------------------------

@dataclass
class Prepared:
    """What was written (manifest rows) and what was left out, each with its reason."""

    rows: list[tuple[str, str, str, str, str, int, int]]  # source, destination, sha256, class, split, w, h
    rejected: list[tuple[str, str]]
    duplicates: list[tuple[str, str]]  # (source, source kept instead)
    conflicts: list[tuple[str, str]]
    notes: list[tuple[str, str]]
    too_small: list[str]
    near_groups: list[list[tuple[str, int]]] = field(default_factory=list)   # (key, bits from the first) per group


def build_dataset(samples: Sequence[Sample], keys: Sequence[str], work: Path, *, val: float, test: float,
                  seed: int, mode: str, fmt: str, jpg_quality: int, max_pixels: int, workers: int,
                  multi_label: bool, near_duplicates: str = "together", near_distance: int = 4) -> Prepared:
    """Decode ``samples`` (named by ``keys``), drop duplicates and conflicts, split, and write into ``work``.

    Near-duplicates (perceptual hashes within ``near_distance`` bits) are found unless
    ``near_duplicates`` is ``off``, and kept in one split when it is ``together``.
    Single-label classes too small for the requested splits raise ImgclfError naming
    them; multi-label groups that are too small stay in train and are returned.
    """
    from imgclf.data.split import Item, deduplicate, near_duplicates as find_near, split_together

    outcomes = decode_journaled(samples, keys, work, mode, fmt, jpg_quality, max_pixels, workers)
    rejected = [(keys[o.index], o.error) for o in outcomes if o.error]
    good = {keys[o.index]: o for o in outcomes if not o.error}
    if not good:
        listing = "; ".join(f"{k}: {r}" for k, r in rejected[:3])
        raise ImgclfError(f"none of the {len(rejected)} image file(s) could be read, so there is nothing to "
                          f"prepare ({listing}{'; ...' if len(rejected) > 3 else ''})")
    labels_of = {key: s.labels for key, s in zip(keys, samples)}
    dedup = deduplicate([Item(k, o.digest, labels_of[k], o.phash) for k, o in good.items()])
    groups: dict[str, list[str]] = {}
    for item in dedup.kept:
        groups.setdefault("+".join(item.labels), []).append(item.key)
    near = [[i.key for i in g] for g in find_near(dedup.kept, near_distance)] if near_duplicates != "off" else []
    assignment, too_small = split_together(groups, near if near_duplicates == "together" else [], val, test, seed)
    if too_small and not multi_label:
        raise ImgclfError(_too_small_message(too_small, groups, val, test, bool(near)))
    folder = (lambda k: f"{assignment[k]}/{MULTI_LABEL_DIR}") if multi_label else \
        (lambda k: f"{assignment[k]}/{labels_of[k][0]}")
    names = assign_names([(k, folder(k), Path(k).stem, Path(good[k].staged).suffix) for k in assignment])
    rows = []
    for key, rel in names.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        os.rename(good[key].staged, work / rel)
        o = good[key]
        rows.append((key, rel, o.digest, ";".join(labels_of[key]), assignment[key], o.width, o.height))
    shutil.rmtree(work / STAGING)
    (work / JOURNAL).unlink()
    rows.sort(key=lambda r: (SPLIT_ORDER[r[4]], r[3], r[1]))
    notes = [(k, "; ".join(o.notes)) for k, o in sorted(good.items()) if o.notes and k in names]
    distances = [[(k, hash_distance(good[g[0]].phash, good[k].phash)) for k in g] for g in near]
    return Prepared(rows, rejected, dedup.duplicates, dedup.conflicts, notes, too_small, distances)


SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


def _too_small_message(names: Sequence[str], groups: dict[str, list[str]], val: float, test: float,
                       near: bool = False) -> str:
    listed = ", ".join(f"'{n}' ({len(groups[n])} image{'s' * (len(groups[n]) != 1)})" for n in names)
    need = 3 if test > 0 else 2
    grouped = (" (a group of near-duplicates counts once; --near-duplicates report splits them freely)"
               if near else "")
    return (f"too few images to split class {listed} after removing duplicates and conflicts: each class "
            f"needs at least {need} to appear in train, val{' and test' if test > 0 else ''}{grouped}. Add "
            f"images, move the class folder out of SRC, or pass --val 0{' --test 0' if test > 0 else ''}")
