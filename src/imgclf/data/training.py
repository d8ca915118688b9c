"""The two splits of a training run as batch sources: in memory, from the disk cache, or streamed.

``--cache`` picks how decoded images reach the loop (see docs/design.md, "Scale"):

* ``memory``: every image decoded once into one uint8 tensor (read from the persistent decode
  cache when a valid one exists, and written there when it does not);
* ``disk``: the persistent decode cache file, read per batch (bounded memory, no decode);
* ``off``: DataLoader workers decode every batch (nothing stored);
* ``auto``: memory when the decoded images fit ``--cache-gb``, else disk when the cache folder has
  room, else streaming.

mean/std come from the same sample of at most STATS_SAMPLE train images in every mode, so the
mode never changes the numbers a run trains with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from imgclf.console import status, warn
from imgclf.data.cache import CacheFile, CacheSpec, cache_folder, free_bytes
from imgclf.data.cache_write import consume_chunks, load_or_build
from imgclf.data.folders import list_split
from imgclf.data.loading import GEOMETRY, auto_img_size, decode_chunks
from imgclf.data.sources import BatchSource, DiskSource, StreamSource, TensorSource
from imgclf.data.transforms import Preprocess, channel_stats
from imgclf.errors import ImgclfError

GIB = 1024 ** 3
STATS_SAMPLE = 2000           # train images used for mean/std (all of them below 2 x this)
STATS_BATCH = 64              # ... read or decoded this many at a time
DISK_HEADROOM = 256 * 1024 ** 2   # free space left over when auto writes a disk cache


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
    cached: bool                  # decoded once (memory or disk), not per batch
    rejected: list[tuple[str, str]] = field(default_factory=list)
    mode: str = "memory"          # memory | disk | stream
    preprocessed: bool = False    # --preprocess already applied to what the sources yield
    native_size: int = 0          # with --img-size auto: the data's own size, before the recipe's rule


@dataclass
class Split:
    """One split as listed: files, their class indices, and how the sources see it."""

    name: str
    paths: list[Path]
    targets: list[int]


@dataclass
class Settings:
    """Everything a mode loader needs besides the splits."""

    data_root: Path
    img_size: int
    channels: int
    workers: int
    pin: bool
    preprocess: str
    preprocess_fn: Preprocess | None
    folder: Path | None

    def spec(self, split: Split) -> CacheSpec:
        return CacheSpec(split.name, tuple(split.paths), self.data_root, self.img_size, self.channels,
                         self.preprocess or "none", GEOMETRY)

    def numpy_preprocess(self) -> Callable[[np.ndarray], np.ndarray] | None:
        fn = self.preprocess_fn
        return None if fn is None else (lambda rows: fn(torch.from_numpy(rows)).numpy())


def _counts(targets: list[int] | torch.Tensor, classes: list[str]) -> dict[str, int]:
    values = torch.as_tensor(targets).tolist()
    return {name: values.count(i) for i, name in enumerate(classes)}


def stats_sample(num_images: int) -> list[int]:
    """The train indices whose pixels give mean/std: every k-th, at most about STATS_SAMPLE."""
    return list(range(0, num_images, max(1, num_images // STATS_SAMPLE)))


def load_training_data(data_root: Path, img_size: int, channels: int, cache: str, cache_gb: float,
                       workers: int, pin: bool = False, preprocess: str = "none",
                       preprocess_fn: Preprocess | None = None, cache_dir: Path | None = None,
                       size_rule: Callable[[int, int], int] | None = None) -> TrainingData:
    """List train/val, choose the size and the cache mode, build the sources, compute mean/std of train.

    ``img_size`` 0 = from the data (``auto_img_size``), passed through ``size_rule(native px, train
    images)`` when given."""
    train_paths, train_targets, classes = list_split(data_root, "train")
    val_paths, val_targets, _ = list_split(data_root, "val", classes)
    if len(classes) < 2:
        raise ImgclfError(f"{data_root}/train: found {len(classes)} class folder(s); a classifier needs at least 2")
    for index, name in enumerate(classes):
        if index not in train_targets:
            warn(f"{data_root}/train/{name}: empty class folder (no images); the model gets a class it never "
                 "sees in training; remove the folder if that is not intended")
    native = auto_img_size(train_paths) if not img_size else 0
    img_size = img_size or (size_rule(native, len(train_paths)) if size_rule else native)
    splits = (Split("train", train_paths, train_targets), Split("val", val_paths, val_targets))
    need = (len(train_paths) + len(val_paths)) * channels * img_size * img_size
    folder = cache_folder(data_root, cache_dir) if cache != "off" else None
    mode = choose_mode(cache, need, cache_gb, folder)
    settings = Settings(data_root, img_size, channels, workers, pin, preprocess, preprocess_fn, folder)
    data = MODES[mode](splits, settings, classes)
    return dataclasses.replace(data, mode=mode, cached=mode != "stream", native_size=native,
                               preprocessed=preprocess_fn is not None and mode != "stream")


def choose_mode(cache: str, need_bytes: int, cache_gb: float, folder: Path | None) -> str:
    """memory | disk | stream for ``--cache`` (auto: memory within --cache-gb, else disk if it has room)."""
    if cache == "off":
        return "stream"
    if cache == "memory" or (cache == "auto" and need_bytes <= cache_gb * GIB):
        return "memory"
    size = f"{need_bytes / GIB:.1f} GiB" if need_bytes >= GIB / 10 else f"{need_bytes / 1024 ** 2:.0f} MiB"
    why = f"decoded images need {size}" + (f" > --cache-gb {cache_gb}" if cache == "auto" else "")
    if folder is None:
        warn(f"{why}, and no writable folder for a decode cache (see --cache-dir): decoding per batch instead")
        return "stream"
    if free_bytes(folder) < need_bytes + DISK_HEADROOM:
        warn(f"{why}, and {folder} has only {free_bytes(folder) / GIB:.1f} GiB free: decoding per batch instead")
        return "stream"
    status(f"{why}: reading them per batch from the decode cache in {folder}")
    return "disk"


def _check_enough(train_n: int, val_n: int) -> None:
    if train_n < 2 or val_n < 1:
        raise ImgclfError("too few decodable images to train on (need at least 2 train and 1 val)")


def _report(split: Split, rejected: dict[int, str], out: list[tuple[str, str]]) -> list[int]:
    """Warn about the files left out; return the indices kept."""
    for index, reason in sorted(rejected.items()):
        warn(f"{split.paths[index]}: {reason}; left out")
        out.append((str(split.paths[index]), reason))
    return [i for i in range(len(split.paths)) if i not in rejected]


def _memory(splits: Sequence[Split], s: Settings, classes: list[str]) -> TrainingData:
    """Every image in one uint8 tensor per split, from (or into) the persistent cache when possible."""
    rejected: list[tuple[str, str]] = []
    sources, kept_of = [], []
    for split in splits:
        rows, failures = _decoded_rows(split, s)
        kept = _report(split, failures, rejected)
        images = torch.from_numpy(compact_rows(rows, kept))
        sources.append(TensorSource(images, torch.tensor([split.targets[i] for i in kept], dtype=torch.long)))
        kept_of.append(kept)
    train, val = sources
    _check_enough(train.num_images, val.num_images)
    position = {index: n for n, index in enumerate(kept_of[0])}
    sample = [position[i] for i in stats_sample(len(splits[0].paths)) if i in position]
    mean, std = channel_stats(train.images if len(sample) == train.num_images else
                              (torch.index_select(train.images, 0, torch.tensor(sample[i:i + STATS_BATCH]))
                               for i in range(0, len(sample), STATS_BATCH)))
    return TrainingData(classes, s.img_size, s.channels, train, val, _counts(train.targets, classes),
                        _counts(val.targets, classes), mean, std, cached=True, rejected=rejected)


def _decoded_rows(split: Split, s: Settings) -> tuple[np.ndarray, dict[int, str]]:
    """(N, C, S, S) rows (zeros where a file failed) and the failures, via the cache file when one can be kept."""
    spec = s.spec(split)
    chunks = lambda: decode_chunks(split.paths, s.img_size, s.channels, max(s.workers, 0),  # noqa: E731
                                   desc=f"decoding {split.name}")
    path = s.folder / spec.file_name() if s.folder is not None else None
    if path is not None and (path.exists() or free_bytes(path.parent) >= spec.data_bytes + DISK_HEADROOM):
        try:
            cache, rows, _ = load_or_build(path, spec, chunks, s.numpy_preprocess())
            assert rows is not None
            return rows, cache.rejected
        except OSError as err:   # e.g. the disk filled up while writing: memory mode works without the file
            warn(f"could not write the decode cache {path} ({err.strerror or err}); decoding into memory only")
    rows = np.empty((len(split.paths), s.channels, s.img_size, s.img_size), dtype=np.uint8)

    def sink(start: int, chunk: np.ndarray) -> None:
        rows[start:start + len(chunk)] = chunk

    return rows, dict(consume_chunks(chunks(), rows.shape[1:], sink, s.numpy_preprocess()))


def compact_rows(rows: np.ndarray, kept: list[int]) -> np.ndarray:
    """``rows[kept]`` without a second copy of the array (rows move down in place)."""
    for n, index in enumerate(kept):
        if index != n:
            rows[n] = rows[index]
    return rows[:len(kept)]


def _disk(splits: Sequence[Split], s: Settings, classes: list[str]) -> TrainingData:
    """Batches read from the persistent cache files (built first when missing or not valid)."""
    assert s.folder is not None
    rejected: list[tuple[str, str]] = []
    sources: list[DiskSource] = []
    caches: list[CacheFile] = []
    for split in splits:
        spec = s.spec(split)
        chunks = lambda split=split: decode_chunks(split.paths, s.img_size, s.channels,  # noqa: E731
                                                   max(s.workers, 0), desc=f"decoding {split.name}")
        try:
            cache, _, _ = load_or_build(s.folder / spec.file_name(), spec, chunks, s.numpy_preprocess(), read=False)
        except OSError as err:
            raise ImgclfError(f"could not write the decode cache in {s.folder} ({err.strerror or err}); free some "
                              "space, choose another folder with --cache-dir, or train with --cache off") from err
        kept = _report(split, cache.rejected, rejected)
        targets = torch.tensor([split.targets[i] for i in kept], dtype=torch.long)
        sources.append(DiskSource(cache, kept, targets, s.pin))
        caches.append(cache)
    train, val = sources
    _check_enough(train.num_images, val.num_images)
    sample = [i for i in stats_sample(len(splits[0].paths)) if i not in caches[0].rejected]
    mean, std = channel_stats(_cached_batches(caches[0], train.fd, sample))
    return TrainingData(classes, s.img_size, s.channels, train, val, _counts(train.targets, classes),
                        _counts(val.targets, classes), mean, std, cached=True, rejected=rejected)


def _stream(splits: Sequence[Split], s: Settings, classes: list[str]) -> TrainingData:
    """Every batch decoded from the files; mean/std from the decoded stats sample."""
    workers = s.workers if s.workers >= 0 else min(8, max(1, (torch.get_num_threads() or 1)))
    decoder = "processes" if s.pin else "threads"   # pin: training on CUDA, whose cores are free to decode
    train, val = (StreamSource(split.paths, split.targets, s.img_size, s.channels, workers, s.pin, decoder)
                  for split in splits)
    sample = [splits[0].paths[i] for i in stats_sample(len(splits[0].paths))]
    try:
        mean, std = channel_stats(_decoded_batches(sample, s))
    except ValueError:
        raise ImgclfError(f"none of the {len(sample)} train images sampled for mean/std could be decoded") from None
    return TrainingData(classes, s.img_size, s.channels, train, val, _counts(splits[0].targets, classes),
                        _counts(splits[1].targets, classes), mean, std, cached=False)


def _cached_batches(cache: CacheFile, fd: int, rows: Sequence[int]) -> Iterator[torch.Tensor]:
    """Rows of a cache file, STATS_BATCH at a time."""
    for i in range(0, len(rows), STATS_BATCH):
        chunk = rows[i:i + STATS_BATCH]
        images = torch.empty((len(chunk), *cache.shape), dtype=torch.uint8)
        cache.read_rows(fd, chunk, images.numpy())
        yield images


def _decoded_batches(paths: Sequence[Path], s: Settings) -> Iterator[torch.Tensor]:
    """The decodable images of ``paths`` (preprocessed), one chunk at a time: memory stays flat in N."""
    for _, chunk in decode_chunks(paths, s.img_size, s.channels, max(s.workers, 0), desc="mean/std"):
        rows = [r for r in chunk if not isinstance(r, str)]
        if rows:
            images = torch.from_numpy(np.stack(rows))
            yield s.preprocess_fn(images) if s.preprocess_fn is not None else images


MODES: dict[str, Callable[[Sequence[Split], Settings, list[str]], TrainingData]] = {
    "memory": _memory, "disk": _disk, "stream": _stream}


def preprocess_cached(data: TrainingData, preprocess: Preprocess, batch: int = 512) -> TrainingData:
    """Apply a deterministic ``--preprocess`` once to images held in memory (not every epoch), and
    recompute the train mean/std on what the model will actually see."""
    def apply(source: TensorSource) -> TensorSource:
        images = torch.cat([preprocess(source.images[i:i + batch]) for i in range(0, source.num_images, batch)])
        return TensorSource(images, source.targets)

    train, val = apply(data.train), apply(data.val)   # type: ignore[arg-type]
    mean, std = channel_stats(train.images)
    return dataclasses.replace(data, train=train, val=val, mean=mean, std=std, preprocessed=True)
