"""The two splits of a training run as batch sources, decoded once when they fit in memory."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from imgclf.console import status, warn
from imgclf.data.folders import list_split
from imgclf.data.loading import auto_img_size, load_images
from imgclf.data.sources import BatchSource, StreamSource, TensorSource
from imgclf.data.transforms import Preprocess, channel_stats
from imgclf.errors import ImgclfError

GIB = 1024 ** 3
STATS_SAMPLE = 2000   # images used for mean/std when streaming


@dataclass
class TrainingData:
    classes: list[str]
    img_size: int
    channels: int
    train: BatchSource
    val: BatchSource
    train_counts: dict[str, int]
    val_counts: dict[str, int]
    mean: list[float]
    std: list[float]
    cached: bool
    rejected: list[tuple[str, str]] = field(default_factory=list)


def _counts(targets: list[int] | torch.Tensor, classes: list[str]) -> dict[str, int]:
    values = torch.as_tensor(targets).tolist()
    return {name: values.count(i) for i, name in enumerate(classes)}


def load_training_data(data_root: Path, img_size: int, channels: int, cache: str, cache_gb: float,
                       workers: int, pin: bool = False) -> TrainingData:
    """List train/val, choose the size, decode into memory (or stream), compute mean/std of train."""
    train_paths, train_targets, classes = list_split(data_root, "train")
    val_paths, val_targets, _ = list_split(data_root, "val", classes)
    if len(classes) < 2:
        raise ImgclfError(f"{data_root}/train: found {len(classes)} class folder(s); a classifier needs at least 2")
    for index, name in enumerate(classes):
        if index not in train_targets:
            warn(f"{data_root}/train/{name}: empty class folder (no images); the model gets a class it never "
                 "sees in training; remove the folder if that is not intended")
    img_size = img_size or auto_img_size(train_paths)
    need = (len(train_paths) + len(val_paths)) * channels * img_size * img_size
    cached = cache == "memory" or (cache == "auto" and need <= cache_gb * GIB)
    if cache == "auto" and not cached:
        status(f"decoded images need {need / GIB:.1f} GiB > --cache-gb {cache_gb}: decoding per batch instead")
    if cached:
        return _cached(classes, img_size, channels, train_paths, train_targets, val_paths, val_targets, workers)
    workers = workers if workers >= 0 else min(8, max(1, (torch.get_num_threads() or 1)))
    train = StreamSource(train_paths, train_targets, img_size, channels, workers, pin)
    val = StreamSource(val_paths, val_targets, img_size, channels, workers, pin)
    sample = train_paths[:: max(1, len(train_paths) // STATS_SAMPLE)]
    images, _, _ = load_images(sample, img_size, channels, desc="mean/std")
    mean, std = channel_stats(images)
    return TrainingData(classes, img_size, channels, train, val, _counts(train_targets, classes),
                        _counts(val_targets, classes), mean, std, cached=False)


def _cached(classes: list[str], img_size: int, channels: int, train_paths: list[Path], train_targets: list[int],
            val_paths: list[Path], val_targets: list[int], workers: int) -> TrainingData:
    rejected: list[tuple[str, str]] = []
    sources = []
    for name, paths, targets in (("train", train_paths, train_targets), ("val", val_paths, val_targets)):
        images, ok, errors = load_images(paths, img_size, channels, max(workers, 0), desc=f"decoding {name}")
        for path, reason in errors:
            warn(f"{path}: {reason}; left out")
            rejected.append((str(path), reason))
        kept = torch.tensor([targets[i] for i in ok], dtype=torch.long)
        sources.append((images, kept))
    (train_images, train_t), (val_images, val_t) = sources
    if len(train_t) < 2 or len(val_t) < 1:
        raise ImgclfError("too few decodable images to train on (need at least 2 train and 1 val)")
    mean, std = channel_stats(train_images)
    return TrainingData(classes, img_size, channels, TensorSource(train_images, train_t),
                        TensorSource(val_images, val_t), _counts(train_t, classes), _counts(val_t, classes),
                        mean, std, cached=True, rejected=rejected)


def preprocess_cached(data: TrainingData, preprocess: Preprocess, batch: int = 512) -> TrainingData:
    """Apply a deterministic ``--preprocess`` once to images held in memory (not every epoch), and
    recompute the train mean/std on what the model will actually see."""
    def apply(source: TensorSource) -> TensorSource:
        images = torch.cat([preprocess(source.images[i:i + batch]) for i in range(0, source.num_images, batch)])
        return TensorSource(images, source.targets)

    train, val = apply(data.train), apply(data.val)   # type: ignore[arg-type]
    mean, std = channel_stats(train.images)
    return dataclasses.replace(data, train=train, val=val, mean=mean, std=std)
