"""Multi-label data: ``DATA/<split>/labels.csv`` (``path,labels``, labels ``;``-separated) as multi-hot targets.

``imgclf prepare`` writes this layout from label files or CSVs with several labels per
image: images in ``<split>/images/``, one row per image. Targets are float (N, K)
multi-hot tensors, so the same batch sources serve single- and multi-label data.
Multi-label images are always decoded into memory (the streaming loader is single-label).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import torch

from imgclf.console import status, warn
from imgclf.data.loading import auto_img_size, load_images
from imgclf.data.sources import TensorSource
from imgclf.data.training import GIB, TrainingData
from imgclf.data.transforms import channel_stats
from imgclf.errors import ImgclfError

LABELS_CSV = "labels.csv"


def is_multilabel(data_root: Path) -> bool:
    """True when the train split has a ``labels.csv`` (the multi-label layout of ``imgclf prepare``)."""
    return (Path(data_root) / "train" / LABELS_CSV).is_file()


def resolve_multi_label(data_root: Path | None, requested: bool) -> bool:
    """Whether DATA is multi-label: its layout decides; ``requested`` (``--multi-label``) without it is an error."""
    detected = data_root is not None and is_multilabel(data_root)
    if requested and not detected:
        raise ImgclfError(f"--multi-label: {data_root}/train/{LABELS_CSV} not found (write it with imgclf prepare "
                          "from label files or a CSV with several labels per image)")
    return detected


def read_labels_csv(split_dir: Path) -> tuple[list[Path], list[tuple[str, ...]]]:
    """(image paths, label tuples) of ``split_dir/labels.csv``; paths are relative to ``split_dir``."""
    path = split_dir / LABELS_CSV
    if not path.is_file():
        raise ImgclfError(f"{path}: not found; multi-label data needs <split>/{LABELS_CSV} "
                          "(write it with: imgclf prepare RAW DATA from label files or a CSV)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"path", "labels"} <= set(rows[0]):
        raise ImgclfError(f"{path}: expected the columns path,labels")
    paths = [split_dir / r["path"] for r in rows]
    labels = [tuple(sorted({x.strip() for x in r["labels"].split(";") if x.strip()})) for r in rows]
    return paths, labels


def multi_hot(labels: list[tuple[str, ...]], classes: list[str]) -> torch.Tensor:
    """(N, K) float multi-hot targets; labels not in ``classes`` are ignored."""
    index = {name: i for i, name in enumerate(classes)}
    targets = torch.zeros(len(labels), len(classes))
    for row, names in enumerate(labels):
        for name in names:
            if name in index:
                targets[row, index[name]] = 1.0
    return targets


def load_multilabel_data(data_root: Path, img_size: int, channels: int, cache_gb: float,
                         workers: int, size_rule: Callable[[int, int], int] | None = None) -> TrainingData:
    """Decode train and val of a multi-label tree into memory; classes = the labels seen in train."""
    train_paths, train_labels = read_labels_csv(data_root / "train")
    val_paths, val_labels = read_labels_csv(data_root / "val")
    classes = sorted({name for names in train_labels for name in names})
    if len(classes) < 2:
        raise ImgclfError(f"{data_root}/train/{LABELS_CSV}: found {len(classes)} label(s); need at least 2")
    unknown = sorted({n for names in val_labels for n in names} - set(classes))
    if unknown:
        warn(f"{data_root}/val: labels never seen in train are ignored: {', '.join(unknown)}")
    native = auto_img_size(train_paths) if not img_size else 0
    img_size = img_size or (size_rule(native, len(train_paths)) if size_rule else native)
    need = (len(train_paths) + len(val_paths)) * channels * img_size * img_size
    if need > cache_gb * GIB:
        status(f"multi-label data is decoded into memory: {need / GIB:.1f} GiB (over --cache-gb {cache_gb})")
    splits, rejected = [], []
    for name, paths, labels in (("train", train_paths, train_labels), ("val", val_paths, val_labels)):
        images, ok, errors = load_images(paths, img_size, channels, max(workers, 0), desc=f"decoding {name}")
        for path, reason in errors:
            warn(f"{path}: {reason}; left out")
            rejected.append((str(path), reason))
        splits.append((images, multi_hot([labels[i] for i in ok], classes)))
    (train_images, train_t), (val_images, val_t) = splits
    if len(train_t) < 2 or len(val_t) < 1:
        raise ImgclfError("too few decodable images to train on (need at least 2 train and 1 val)")
    mean, std = channel_stats(train_images)
    count = lambda t: {c: int(n) for c, n in zip(classes, t.sum(dim=0).tolist())}  # noqa: E731
    return TrainingData(classes, img_size, channels, TensorSource(train_images, train_t),
                        TensorSource(val_images, val_t), count(train_t), count(val_t), mean, std,
                        cached=True, rejected=rejected, native_size=native)
