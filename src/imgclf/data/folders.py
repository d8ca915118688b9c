"""ImageFolder-style trees: DATA/<split>/<class>/**/<image>."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from imgclf.data.decode import is_image_name
from imgclf.errors import ImgclfError


HIDDEN_NAMES = frozenset({"__MACOSX", "__pycache__", "Thumbs.db", "desktop.ini"})


def is_hidden(name: str) -> bool:
    """Names that are never classes or samples: dot-files, macOS and Windows litter."""
    return name.startswith(".") or name in HIDDEN_NAMES


def list_classes(split_dir: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``split_dir``."""
    if not split_dir.is_dir():
        raise ImgclfError(f"{split_dir}: folder not found")
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not is_hidden(p.name))


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden entries skipped), sorted."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        found += [Path(dirpath) / f for f in filenames if not is_hidden(f) and is_image_name(f)]
    return sorted(found)


def list_split(data_root: Path, split: str, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """(paths, class indices, classes) of ``data_root/split``; classes default to its folders."""
    split_dir = data_root / split
    if not data_root.is_dir():
        raise ImgclfError(f"{data_root}: data folder not found")
    if not split_dir.is_dir():
        found = sorted(p.name for p in data_root.iterdir() if p.is_dir()) if data_root.is_dir() else []
        raise ImgclfError(f"{split_dir}: no '{split}' split here (found: {', '.join(found) or 'nothing'}); "
                          f"make one with: imgclf prepare RAW {data_root}")
    classes = classes if classes is not None else list_classes(split_dir)
    paths: list[Path] = []
    targets: list[int] = []
    for index, name in enumerate(classes):
        class_dir = split_dir / name
        if class_dir.is_dir():
            images = list_images(class_dir)
            paths += images
            targets += [index] * len(images)
    unknown = sorted(set(list_classes(split_dir)) - set(classes))
    if unknown:
        raise ImgclfError(f"{split_dir}: classes not known to the model: {', '.join(unknown)}")
    if not paths:
        raise ImgclfError(f"found 0 images in the class folders of {split_dir}")
    return paths, targets, classes


MANIFEST = "manifest.csv"


def labels_from_folders(paths: list[Path], classes: list[str]) -> list[int]:
    """The class index of each image from its parent folder's name (``<split>/<class>/x.png``); -1 where none."""
    index = {name: i for i, name in enumerate(classes)}
    return [index.get(p.parent.name, -1) for p in paths]


def fingerprint_data(root: Path) -> tuple[str, str]:
    """(sha256, what was hashed) identifying a data folder's content.

    ``DATA/manifest.csv`` (written by ``imgclf prepare``: every file with its sha256) when there is
    one; else the sorted list of every non-hidden file's relative path and size, which is cheap
    (no file is read) and changes when a file is added, removed, renamed or resized.
    """
    manifest = root / MANIFEST
    if manifest.is_file():
        digest = hashlib.sha256()
        with open(manifest, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest(), MANIFEST
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not is_hidden(d)]
        for name in filenames:
            if not is_hidden(name):
                path = Path(dirpath) / name
                lines.append(f"{path.relative_to(root).as_posix()}\t{path.stat().st_size}")
    return hashlib.sha256("\n".join(sorted(lines)).encode("utf-8")).hexdigest(), "file list"


def expand_paths(paths: Sequence[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files and folders -> image files (folders recursively); other entries reported."""
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += list_images(path)
        elif path.is_file():
            (files.append(path) if is_image_name(path) else skipped.append((path, "not an image file name")))
        elif path.exists():
            skipped.append((path, "not a regular file (a FIFO, socket or device)"))
        else:
            skipped.append((path, "not found"))
    return files, skipped
