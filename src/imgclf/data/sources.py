"""Batch sources: yield (images uint8 (B, C, S, S), targets int64 (B,)) for a given sample order.

``TensorSource`` serves images decoded once and kept in memory (the fast default);
``StreamSource`` decodes per batch in DataLoader workers when the data does not fit.
Both hand the loop uint8 batches, so augmentation and normalisation are the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import torch

from imgclf.console import warn
from imgclf.data.loading import decode_resized
from imgclf.errors import ImageDecodeError

Batch = tuple[torch.Tensor, torch.Tensor]
BAD_TARGET = -1


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
            else:
                yield self.images[idx], self.targets[idx]


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[Path], targets: Sequence[int], img_size: int, channels: int) -> None:
        self.paths, self.targets, self.img_size, self.channels = list(paths), list(targets), img_size, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, str]:
        """(image, target, index, "") or, for a file that cannot be decoded, (zeros, BAD_TARGET, index, reason)."""
        try:
            arr = decode_resized(self.paths[index], self.img_size, self.channels)
            return torch.from_numpy(arr), self.targets[index], index, ""
        except ImageDecodeError as err:
            empty = torch.zeros((self.channels, self.img_size, self.img_size), dtype=torch.uint8)
            return empty, BAD_TARGET, index, err.reason


class StreamSource:
    """Decode per batch in worker processes; files that fail are dropped and reported once."""

    def __init__(self, paths: Sequence[Path], targets: Sequence[int], img_size: int, channels: int,
                 workers: int, pin: bool = False) -> None:
        self.dataset = _FileDataset(paths, targets, img_size, channels)
        self.targets = torch.as_tensor(list(targets), dtype=torch.long)
        self.num_images = len(paths)
        self.workers, self.pin = workers, pin
        self.skipped: dict[Path, str] = {}   # file -> why it was left out

    def batches(self, order: torch.Tensor, batch_size: int) -> Iterator[Batch]:
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=[c.tolist() for c in split_order(order, batch_size)],
            num_workers=self.workers, pin_memory=self.pin, persistent_workers=False)
        for images, targets, indices, reasons in loader:
            good = targets != BAD_TARGET
            if not bool(good.all()):
                for n in (~good).nonzero().flatten().tolist():
                    path = self.dataset.paths[int(indices[n])]
                    if path not in self.skipped:
                        self.skipped[path] = reasons[n]
                        warn(f"{path}: {reasons[n]}; skipped")
                images, targets = images[good], targets[good]
            if len(targets):
                yield images, targets
