"""Batch sources: yield (images uint8 (B, C, S, S), targets int64 (B,)) for a given sample order.

``TensorSource`` serves images decoded once and kept in memory (the fast default);
``DiskSource`` reads them per batch from the persistent decode cache when they do not fit;
``StreamSource`` decodes every batch from the files (no cache at all).
All hand the loop the same uint8 batches for the same order, so augmentation, normalisation
and exact resume do not depend on the mode.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import torch

from imgclf.console import warn
from imgclf.data.cache import CacheFile
from imgclf.data.loading import decode_resized
from imgclf.errors import ImageDecodeError

Batch = tuple[torch.Tensor, torch.Tensor]
Item, Started, Done = TypeVar("Item"), TypeVar("Started"), TypeVar("Done")


class BatchSource(Protocol):
    num_images: int
    targets: torch.Tensor    # (N,) class indices, or (N, K) multi-hot

    def batches(self, order: torch.Tensor, batch_size: int) -> Iterator[Batch]: ...


def split_order(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Consecutive index chunks; a trailing chunk of one image is dropped (BatchNorm needs 2)."""
    chunks = list(torch.split(order, batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks.pop()
    return chunks


def one_ahead(items: Sequence[Item], start: Callable[[Item], Started],
              finish: Callable[[Started], Done]) -> Iterator[Done]:
    """``finish(start(item))`` for each item in order, the next item started before one is handed out:
    its work (in a background thread) overlaps with what the caller does with the current one."""
    pending = start(items[0]) if items else None
    for n in range(len(items)):
        done = finish(pending)   # type: ignore[arg-type]
        pending = start(items[n + 1]) if n + 1 < len(items) else None
        yield done


class TensorSource:
    """Images already decoded to a uint8 tensor (N, C, S, S)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, pin: bool = False) -> None:
        self.images = images.pin_memory() if pin else images
        self.targets = targets
        self.num_images = images.shape[0]

    def batches(self, order: torch.Tensor, batch_size: int) -> Iterator[Batch]:
        sequential = bool((order[1:] - order[:-1] == 1).all()) if len(order) > 1 else True
        for idx in split_order(order, batch_size):
            if sequential:
                start = int(idx[0])
                yield self.images[start:start + len(idx)], self.targets[start:start + len(idx)]
            else:   # index_select copies whole rows: 7-25x faster than images[idx] on uint8 (B, C, S, S)
                yield torch.index_select(self.images, 0, idx), torch.index_select(self.targets, 0, idx)


class _FileDataset(torch.utils.data.Dataset):
    """Files decoded on demand. Paths are one numpy byte array, not a list of Python objects: forked
    workers then share it instead of copying it page by page as reference counts change."""

    def __init__(self, paths: Sequence[Path], img_size: int, channels: int) -> None:
        self.paths = np.array([os.fsencode(p) for p in paths])
        self.img_size, self.channels = img_size, channels

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, index: int) -> Path:
        return Path(os.fsdecode(self.paths[index]))

    def decode(self, index: int) -> tuple[np.ndarray | None, str]:
        """(image (C, S, S), "") or, for a file that cannot be decoded, (None, reason)."""
        try:
            return decode_resized(self.path(index), self.img_size, self.channels), ""
        except ImageDecodeError as err:
            return None, err.reason

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        """(image, index, reason): reason "" for a decoded image, else why not (image zeros)."""
        image, reason = self.decode(index)
        if image is None:
            return torch.zeros((self.channels, self.img_size, self.img_size), dtype=torch.uint8), index, reason
        return torch.from_numpy(image), index, reason


class _SettableBatches:
    """A batch sampler whose batches are set before each pass: one DataLoader (and its persistent
    workers) serves every epoch, each in its own order."""

    def __init__(self) -> None:
        self.chunks: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)


DecodedBatch = tuple[torch.Tensor, torch.Tensor, list[str]]   # images, source indices, reasons ("" = decoded)
DECODERS = ("threads", "processes")


class _ThreadDecoder:
    """Decode the next batch in threads of this process while the current one trains.

    For training on the CPU, where the decoder and the model share the same cores: one batch ahead,
    split across the threads, no process hand-over; Pillow releases the GIL while it decodes and
    resizes. On 2 cores this streams at about twice the rate of worker processes (docs/design.md)."""

    def __init__(self, dataset: _FileDataset, threads: int) -> None:
        self.dataset, self.threads = dataset, max(1, threads)
        self.pool: ThreadPoolExecutor | None = None

    def _fill(self, batch: np.ndarray, idx: list[int], rows: range, reasons: list[str]) -> None:
        """Decode rows ``rows`` of a batch (numpy only here: a torch op in this thread could start
        a parallel region of its own)."""
        for row in rows:
            image, reasons[row] = self.dataset.decode(idx[row])
            batch[row] = 0 if image is None else image

    def _submit(self, idx: list[int]) -> tuple[torch.Tensor, list[int], list[str], list[Future[None]]]:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="imgclf-decode")
        d = self.dataset
        batch = torch.empty((len(idx), d.channels, d.img_size, d.img_size), dtype=torch.uint8)
        reasons = [""] * len(idx)
        futures = [self.pool.submit(self._fill, batch.numpy(), idx, range(t, len(idx), self.threads), reasons)
                   for t in range(self.threads)]
        return batch, idx, reasons, futures

    @staticmethod
    def _collect(pending: tuple[torch.Tensor, list[int], list[str], list[Future[None]]]) -> DecodedBatch:
        batch, idx, reasons, futures = pending
        for future in futures:
            future.result()
        return batch, torch.tensor(idx, dtype=torch.long), reasons

    def __call__(self, chunks: list[list[int]]) -> Iterator[DecodedBatch]:
        return one_ahead(chunks, self._submit, self._collect)


class _ProcessDecoder:
    """Decode in persistent DataLoader worker processes, for training on an accelerator: the cores
    are free while it computes, and processes scale past the GIL."""

    def __init__(self, dataset: _FileDataset, workers: int, pin: bool) -> None:
        self.sampler = _SettableBatches()
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.sampler, num_workers=workers, pin_memory=pin,
            persistent_workers=workers > 0)

    def __call__(self, chunks: list[list[int]]) -> Iterator[DecodedBatch]:
        self.sampler.chunks = chunks
        yield from self.loader


class StreamSource:
    """Decode every batch from the files (no cache); files that fail are dropped and reported once.

    ``decoder`` "threads" (training on the CPU) or "processes" (on an accelerator); both hand the
    loop the same batches for the same order."""

    def __init__(self, paths: Sequence[Path], targets: Sequence[int], img_size: int, channels: int,
                 workers: int, pin: bool = False, decoder: str = "threads") -> None:
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, not {decoder!r}")
        self.dataset = _FileDataset(paths, img_size, channels)
        self.targets = torch.as_tensor(list(targets), dtype=torch.long)
        self.num_images = len(paths)
        self.decode = (_ProcessDecoder(self.dataset, workers, pin) if decoder == "processes"
                       else _ThreadDecoder(self.dataset, workers))
        self.skipped: dict[Path, str] = {}   # file -> why it was left out

    def batches(self, order: torch.Tensor, batch_size: int) -> Iterator[Batch]:
        for images, indices, reasons in self.decode([c.tolist() for c in split_order(order, batch_size)]):
            good = torch.tensor([not r for r in reasons], dtype=torch.bool)
            if not bool(good.all()):
                for n in (~good).nonzero().flatten().tolist():
                    path = self.dataset.path(int(indices[n]))
                    if path not in self.skipped:
                        self.skipped[path] = reasons[n]
                        warn(f"{path}: {reasons[n]}; skipped")
                images, indices = images[good], indices[good]
            if len(indices):
                yield images, self.targets[indices]


class DiskSource:
    """Rows of a decode-cache file, read per batch with ``pread`` (the OS page cache keeps them warm;
    the process itself holds only the batches in flight). The next batch is read in a background
    thread while the current one trains."""

    def __init__(self, cache: CacheFile, rows: Sequence[int], targets: torch.Tensor, pin: bool = False) -> None:
        self.cache, self.targets, self.pin = cache, targets, pin
        self.rows = np.asarray(rows, dtype=np.int64)   # source index -> row of the file
        self.num_images = len(self.rows)
        self.fd = os.open(cache.path, os.O_RDONLY)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            os.close(self.fd)

    def read(self, idx: torch.Tensor) -> Batch:
        """One batch, read straight into a fresh (pinned, on CUDA) tensor: the loop may keep it."""
        batch = torch.empty((len(idx), *self.cache.shape), dtype=torch.uint8, pin_memory=self.pin)
        self.cache.read_rows(self.fd, self.rows[idx.numpy()].tolist(), batch.numpy())
        return batch, self.targets[idx]

    def batches(self, order: torch.Tensor, batch_size: int) -> Iterator[Batch]:
        with ThreadPoolExecutor(max_workers=1) as reader:
            yield from one_ahead(split_order(order, batch_size), lambda idx: reader.submit(self.read, idx),
                                 Future.result)
