"""Statistics of an image-folder data set: counts, sizes, per-channel mean/std, imbalance.

Works on a prepared folder (``DATA/<split>/<class>/``, or ``DATA/<split>/images/`` +
``labels.csv`` for multi-label data) and on any plain class-folder tree, which is
treated as one split called ``all``.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.data.decode import decode_image, read_size, to_uint8_array
from imgclf.data.folders import list_classes, list_images
from imgclf.errors import ImageDecodeError, ImgclfError

SPLIT_NAMES = ("train", "val", "test")
IMBALANCE_RATIO = 3.0
TOP_SIZES = 5


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and std on the 0..1 scale: the numbers ``Normalize(mean, std)`` wants."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_images: int
    num_pixels: int
    num_unreadable: int = 0


def find_splits(root: Path) -> dict[str, Path]:
    """``{split: folder}`` for the train/val/test folders of ``root``, else ``{"all": root}``."""
    if not root.is_dir():
        raise ImgclfError(f"{root}: no such folder (pass a prepared folder or a folder of class folders)")
    found = {name: root / name for name in SPLIT_NAMES if (root / name).is_dir()}
    return found or {"all": root}


def list_labelled(split_dir: Path) -> list[tuple[Path, str]]:
    """(image, class) pairs of one split; a multi-label image appears once per label."""
    labels_csv = split_dir / "labels.csv"
    if labels_csv.is_file():
        with open(labels_csv, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [(split_dir / r["path"], label) for r in rows for label in r["labels"].split(";") if label]
    return [(path, cls) for cls in list_classes(split_dir) for path in list_images(split_dir / cls)]


def image_sizes(paths: Sequence[Path]) -> tuple[list[tuple[int, int]], int]:
    """(width, height) of each readable image from its header only (fast), and the unreadable count."""
    sizes = [size for size in map(read_size, paths) if size is not None]
    return sizes, len(paths) - len(sizes)


def summarise_sizes(sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """min/median/max of width and height, and the most common sizes."""
    if not sizes:
        return {"num_images": 0}
    arr = np.asarray(sizes)
    pick = lambda col: {"min": int(arr[:, col].min()), "median": _number(np.median(arr[:, col])),  # noqa: E731
                        "max": int(arr[:, col].max())}
    common = Counter(f"{w}x{h}" for w, h in sizes).most_common(TOP_SIZES)
    return {"num_images": len(sizes), "width": pick(0), "height": pick(1),
            "most_common": [{"size": s, "count": n} for s, n in common]}


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def compute_channel_stats(paths: Sequence[Path], channels: int = 3, max_images: int = 0,
                          seed: int = 0) -> ChannelStats:
    """Per-channel mean/std (0..1 scale) over every pixel of ``paths``, decoded like training does.

    ``channels`` is 3 (grey images replicated to RGB) or 1 (colour converted to luma).
    ``max_images`` > 0 uses a seeded random subset, for speed on large sets.
    Unreadable files are skipped and counted. Pixel-weighted, so large images count more.
    """
    return compute_channel_stats_for(paths, (channels,), max_images, seed)[channels]


def compute_channel_stats_for(paths: Sequence[Path], channel_counts: Sequence[int], max_images: int = 0,
                              seed: int = 0) -> dict[int, ChannelStats]:
    """:func:`compute_channel_stats` for several channel counts with one decode of each file."""
    if any(c not in (1, 3) for c in channel_counts):
        raise ValueError(f"channels must be 1 or 3, got {tuple(channel_counts)}")
    chosen = sorted(paths)
    if 0 < max_images < len(chosen):
        chosen = sorted(random.Random(seed).sample(chosen, max_images))
    sums = {c: (np.zeros(c), np.zeros(c)) for c in channel_counts}
    num_pixels = num_images = 0
    for path in chosen:
        try:
            image = decode_image(path, "keep").image
        except ImageDecodeError:
            continue
        for c, (total, total_sq) in sums.items():
            flat = to_uint8_array(image, c).astype(np.float64).reshape(-1, c) / 255.0   # (H*W, C)
            total += flat.sum(axis=0)
            total_sq += (flat * flat).sum(axis=0)
        num_pixels += image.width * image.height
        num_images += 1
    if num_pixels == 0:
        raise ImgclfError("no readable images to compute mean/std from")
    out = {}
    for c, (total, total_sq) in sums.items():
        mean = total / num_pixels
        std = np.sqrt(np.maximum(total_sq / num_pixels - mean * mean, 0.0))
        out[c] = ChannelStats(tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std),
                              num_images, num_pixels, len(chosen) - num_images)
    return out


def imbalance_warning(counts: Mapping[str, int], ratio: float = IMBALANCE_RATIO) -> str | None:
    """A warning when the largest class has more than ``ratio`` times the images of the smallest.

    A class with no images at all is the most imbalanced case and is named as the smallest.
    """
    if len(counts) < 2:
        return None
    largest = max(counts, key=lambda c: (counts[c], c))
    smallest = min(counts, key=lambda c: (counts[c], c))
    if counts[largest] <= ratio * counts[smallest]:
        return None
    factor = f"{counts[largest] / counts[smallest]:.1f}x" if counts[smallest] else "no images"
    return (f"class imbalance: '{largest}' has {counts[largest]} images, '{smallest}' only "
            f"{counts[smallest]} ({factor}); consider training with --balance sampler or --balance loss")


def dataset_stats(root: Path, max_images: int = 0) -> dict[str, Any]:
    """Everything ``imgclf stats`` reports, as a JSON-ready dict."""
    splits = find_splits(root)
    labelled = {name: list_labelled(folder) for name, folder in splits.items()}
    counts: dict[str, dict[str, int]] = {}
    for split, pairs in labelled.items():
        for _, cls in pairs:
            counts.setdefault(cls, {}).setdefault(split, 0)
            counts[cls][split] += 1
    if not counts:
        raise ImgclfError(f"{root}: found no images in class folders (expected {root}/train/<class>/ "
                          f"or {root}/<class>/); make them with: imgclf prepare RAW {root}")
    all_paths = sorted({p for pairs in labelled.values() for p, _ in pairs})
    sizes, unreadable = image_sizes(all_paths)
    norm_split = "train" if "train" in labelled else next(iter(labelled))
    norm_paths = sorted({p for p, _ in labelled[norm_split]})
    by_channels = compute_channel_stats_for(norm_paths, (3, 1), max_images)
    norm = {"rgb": by_channels[3], "gray": by_channels[1]}
    per_class = {cls: by_split.get(norm_split, 0) for cls, by_split in sorted(counts.items())}
    warnings = [w for w in [imbalance_warning(per_class)] if w]
    if unreadable:
        warnings.append(f"{unreadable} image(s) could not be read; run imgclf prepare on the raw data")
    return {
        "data": str(root), "splits": {s: len({p for p, _ in pairs}) for s, pairs in labelled.items()},
        "counts": {cls: dict(sorted(c.items(), key=lambda kv: _split_rank(kv[0]))) for cls, c in sorted(counts.items())},
        "sizes": {**summarise_sizes(sizes), "unreadable": unreadable},
        "normalization": {"split": norm_split, "num_images": norm["rgb"].num_images,
                          **{name: {"mean": list(s.mean), "std": list(s.std)} for name, s in norm.items()}},
        "warnings": warnings,
    }


def _split_rank(split: str) -> int:
    return SPLIT_NAMES.index(split) if split in SPLIT_NAMES else len(SPLIT_NAMES)
