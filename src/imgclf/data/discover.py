"""Find the labelled images of a raw data set in one of three layouts.

* ``folders``: ``SRC/<class>/**/<image>``
* ``labels``:  ``SRC/**/<name>.<ext>`` next to ``<name>.txt`` holding its label(s)
* ``csv``:     a CSV of ``path,label`` rows, paths relative to the CSV's folder

Hidden entries (``.*``, ``__MACOSX``) are skipped; symlinked folders are never
entered and symlinked files are used only when they point inside SRC, so loops
and links out of SRC cannot pull in foreign files. Nothing here opens an image:
non-image names are rejected by suffix, pixels are checked later by decode.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from imgclf.data.decode import is_image_name
from imgclf.data.folders import is_hidden
from imgclf.errors import ImgclfError
from imgclf.io import is_inside

LABEL_SEPARATORS = re.compile(r"[,;\s]+")
CSV_HEADER_WORDS = frozenset({"path", "file", "filename", "image", "filepath"})


@dataclass(frozen=True)
class Sample:
    """One image file and its label(s); several labels = a multi-label sample."""

    source: Path
    labels: tuple[str, ...]


@dataclass
class Discovery:
    """What a layout walker found: samples, rejected inputs, and skipped (not input) entries."""

    layout: str
    samples: list[Sample] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return sorted({label for s in self.samples for label in s.labels})

    @property
    def multi_label(self) -> bool:
        return any(len(s.labels) != 1 for s in self.samples)


def label_problem(label: str) -> str | None:
    """Why ``label`` cannot be a class folder name, or None when it can."""
    if not label or label in (".", ".."):
        return "an empty label"
    if label.startswith("."):
        return f"label {label!r} starts with '.' (it would be a hidden folder)"
    if any(c in label for c in "/\\\0"):
        return f"label {label!r} contains a path separator"
    return None


def walk_files(root: Path, found: Discovery) -> Iterator[Path]:
    """Every non-hidden file under ``root`` in sorted order; folders are not followed through links."""
    real_root = os.path.realpath(root)

    def on_error(err: OSError) -> None:
        found.rejected.append((Path(err.filename or root), f"cannot read this folder ({err.strerror})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False):
        here = Path(dirpath)
        kept = []
        for name in sorted(dirnames):
            if is_hidden(name):
                found.ignored.append((here / name, "hidden folder"))
            elif os.path.islink(here / name):
                found.ignored.append((here / name, "symlinked folder (links are not followed)"))
            else:
                kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            path = here / name
            if is_hidden(name):
                found.ignored.append((path, "hidden file"))
            elif reason := _link_problem(path, real_root):
                found.rejected.append((path, reason))
            else:
                yield path


def _link_problem(path: Path, real_root: str) -> str | None:
    if not os.path.islink(path):
        return None
    target = os.path.realpath(path)
    if not os.path.exists(target):
        return "broken symlink"
    if not is_inside(target, real_root):
        return "symlink to a file outside SRC (not followed)"
    return None


def discover_folders(src: Path) -> Discovery:
    """``SRC/<class>/**/<image>``: the first folder level names the class."""
    found = Discovery("folders")
    for path in walk_files(src, found):
        parts = path.relative_to(src).parts
        if len(parts) < 2:
            found.rejected.append((path, "not inside a class folder"))
        elif not is_image_name(path):
            found.rejected.append((path, f"not an image file (suffix {path.suffix or 'none'!r})"))
        else:
            found.samples.append(Sample(path, (parts[0],)))
    used = {s.labels[0] for s in found.samples}
    for entry in sorted(src.iterdir()) if src.is_dir() else []:
        if entry.is_dir() and not entry.is_symlink() and not is_hidden(entry.name) and entry.name not in used:
            found.ignored.append((entry, "empty class folder (no image files in it)"))
    return found


def parse_labels(text: str) -> tuple[str, ...]:
    """Labels of a label file: one, or several separated by lines, commas, semicolons or spaces."""
    labels = {part.strip() for part in LABEL_SEPARATORS.split(text) if part.strip()}
    return tuple(sorted(labels))


def discover_labels(src: Path) -> Discovery:
    """Images with same-named ``.txt`` label files beside them (``cat1.jpg`` + ``cat1.txt``)."""
    found = Discovery("labels")
    files = list(walk_files(src, found))
    used_label_files: set[Path] = set()
    for path in files:
        if path.suffix.lower() == ".txt":
            continue
        if not is_image_name(path):
            found.rejected.append((path, f"not an image file (suffix {path.suffix or 'none'!r})"))
            continue
        label_file = path.with_suffix(".txt")
        labels, problem = _read_label_file(label_file)
        if problem:
            found.rejected.append((path, problem))
            continue
        used_label_files.add(label_file)
        found.samples.append(Sample(path, labels))
    for path in files:
        if path.suffix.lower() == ".txt" and path not in used_label_files and not _has_image_beside(path):
            found.rejected.append((path, "label file without a same-named image"))
    return found


def _has_image_beside(label_file: Path) -> bool:
    return any(p.stem == label_file.stem and is_image_name(p) for p in label_file.parent.iterdir())


def _read_label_file(label_file: Path) -> tuple[tuple[str, ...], str | None]:
    try:
        text = label_file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return (), f"no label file {label_file.name} beside it"
    except (OSError, UnicodeDecodeError) as err:
        return (), f"cannot read label file {label_file.name} ({getattr(err, 'strerror', None) or err})"
    labels = parse_labels(text)
    if not labels:
        return (), f"label file {label_file.name} is empty"
    for label in labels:
        if problem := label_problem(label):
            return (), f"label file {label_file.name}: {problem}"
    return labels, None


def find_csv(src: Path) -> Path:
    """``src`` itself when it is a file, else the single ``.csv`` directly inside it."""
    if src.is_file():
        return src
    found = sorted(p for p in src.glob("*.csv") if not is_hidden(p.name))
    if len(found) != 1:
        raise ImgclfError(f"{src}: --layout csv needs one CSV file; found {len(found)} here "
                          "(pass the CSV file itself as SRC)")
    return found[0]


def discover_csv(src: Path) -> Discovery:
    """Rows of ``path,label``; a path listed with several labels becomes a multi-label sample."""
    csv_path = find_csv(src)
    found = Discovery("csv")
    labels_of: dict[Path, set[str]] = {}
    for line_no, row in _read_csv_rows(csv_path):
        if len(row) < 2 or not row[0].strip():
            found.rejected.append((csv_path, f"line {line_no}: expected path,label, got {row!r}"))
            continue
        path = (csv_path.parent / row[0].strip())
        label = row[1].strip()
        problem = label_problem(label) or (None if is_image_name(path) else
                                           f"not an image file (suffix {path.suffix or 'none'!r})")
        if problem is None and not path.is_file():
            problem = f"listed on line {line_no} of {csv_path.name} but not found"
        if problem:
            found.rejected.append((path, problem))
            continue
        labels_of.setdefault(path, set()).add(label)
    found.samples = [Sample(p, tuple(sorted(ls))) for p, ls in sorted(labels_of.items())]
    return found


def _read_csv_rows(csv_path: Path) -> Iterator[tuple[int, list[str]]]:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ImgclfError(f"{csv_path}: cannot read it as a CSV file ({err})") from err
    for line_no, row in enumerate(rows, start=1):
        if not row or row[0].startswith("#"):
            continue
        if line_no == 1 and row[0].strip().lower() in CSV_HEADER_WORDS:
            continue
        yield line_no, row


LAYOUTS: dict[str, Callable[[Path], Discovery]] = {
    "folders": discover_folders,
    "labels": discover_labels,
    "csv": discover_csv,
}


def detect_layout(src: Path) -> str:
    """Guess the layout of ``src``: a CSV file, images with label files, or class folders."""
    if src.is_file():
        if src.suffix.lower() == ".csv":
            return "csv"
        raise ImgclfError(f"{src}: SRC must be a folder or a .csv file of path,label rows")
    if not src.is_dir():
        raise ImgclfError(f"{src}: no such file or folder")
    images = labelled = 0
    for path in walk_files(src, Discovery("probe")):
        if is_image_name(path):
            images += 1
            labelled += path.with_suffix(".txt").is_file()
    if images and labelled * 2 >= images:
        return "labels"
    csvs = [p for p in src.glob("*.csv") if not is_hidden(p.name)]
    if len(csvs) == 1 and _looks_like_label_csv(csvs[0]):
        return "csv"
    if any(p.is_dir() and not is_hidden(p.name) for p in src.iterdir()):
        return "folders"
    raise ImgclfError(f"{src}: cannot tell how it is organised (no class folders, label files or CSV); "
                      "see imgclf prepare --help for the layouts and pass --layout")


def _looks_like_label_csv(csv_path: Path) -> bool:
    """Whether the first data row of ``csv_path`` names an existing file and a label."""
    try:
        _, row = next(_read_csv_rows(csv_path))
    except (StopIteration, ImgclfError):
        return False
    return len(row) >= 2 and (csv_path.parent / row[0].strip()).is_file()


def discover(src: Path, layout: str) -> Discovery:
    """Samples of ``src`` read with ``layout`` (one of LAYOUTS)."""
    if layout not in LAYOUTS:
        raise ImgclfError(f"--layout: unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    return LAYOUTS[layout](src)
