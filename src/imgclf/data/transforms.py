"""Batched tensor transforms: augmentation on uint8 batches, normalisation to float.

They run on whole batches on the training device with a seeded generator, so
augmentation costs microseconds per image instead of a PIL call per image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

Preprocess = Callable[[torch.Tensor], torch.Tensor]   # uint8 (B, C, H, W) -> same

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentParams:
    """The random choices for a batch: crop offsets in [0, 2p] and flip flags, one per image."""

    dy: torch.Tensor      # (B,) int64
    dx: torch.Tensor      # (B,) int64
    flip: torch.Tensor    # (B,) bool

    def __getitem__(self, rows: slice) -> "AugmentParams":
        return AugmentParams(self.dy[rows], self.dx[rows], self.flip[rows])


def sample_augment_params(n: int, padding: int, hflip: bool, generator: torch.Generator) -> AugmentParams:
    """Draw the choices for ``n`` images (on the CPU, from a seeded generator)."""
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5 if hflip else torch.zeros(n, dtype=torch.bool)
    return AugmentParams(dy, dx, flip)


def random_crop(images: torch.Tensor, padding: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop back at offset (dy, dx) per image, like RandomCrop(pad=p).

    images: (B, C, H, W) uint8 -> same shape.
    """
    if padding <= 0:
        return images
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    dy, dx = dy.to(images.device), dx.to(images.device)
    rows = (torch.arange(h, device=images.device)[None, :] + dy[:, None])      # (B, H)
    cols = (torch.arange(w, device=images.device)[None, :] + dx[:, None])      # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def apply_augment(images: torch.Tensor, padding: int, params: AugmentParams) -> torch.Tensor:
    """Random crop with padding, then horizontal flip, with the given choices. images: (B, C, H, W)."""
    images = random_crop(images, padding, params.dy, params.dx)
    if bool(params.flip.any()):
        flip = params.flip.to(images.device)[:, None, None, None]
        images = torch.where(flip, images.flip(3), images)
    return images


def augment_batch(images: torch.Tensor, crop_padding: int, hflip: bool,
                  generator: torch.Generator) -> torch.Tensor:
    """The train augmentation with fresh random choices: random crop with padding, horizontal flip."""
    params = sample_augment_params(images.shape[0], crop_padding, hflip, generator)
    return apply_augment(images, crop_padding, params)


def to_float(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
             channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, C, H, W) -> normalised float32 (B, C, H, W); mean/std are (C,) on the same device."""
    x = images.float().div_(255.0).sub_(mean[None, :, None, None]).div_(std[None, :, None, None])
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """A float batch (B, C, H, W) resized to (B, C, size, size), antialiased; unchanged when already that size."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    channels_last = x.is_contiguous(memory_format=torch.channels_last)
    out = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                          align_corners=False)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def normalization(kind: str, channels: int, train_mean: list[float] | None = None,
                  train_std: list[float] | None = None) -> tuple[list[float], list[float]]:
    """(mean, std) per channel for ``--normalize auto|imagenet|half``."""
    if kind == "imagenet":
        if channels == 3:
            return list(IMAGENET_MEAN), list(IMAGENET_STD)
        return [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
    if kind == "half":
        return [0.5] * channels, [0.5] * channels
    if train_mean is None or train_std is None:
        raise ValueError("--normalize auto needs the mean and std of the train split")
    return train_mean, [max(s, 1e-3) for s in train_std]


def channel_stats(images: torch.Tensor | Iterable[torch.Tensor], batch: int = 64) -> tuple[list[float], list[float]]:
    """Per-channel mean and std on the 0..1 scale of uint8 (N, C, H, W) images: one tensor, or batches of it.

    Sums are exact integers, so the result does not depend on how the images are batched (every
    ``--cache`` mode gets the same numbers); only ``batch`` images are widened at a time.
    """
    batches = (images[i:i + batch] for i in range(0, images.shape[0], batch)) if isinstance(images, torch.Tensor) \
        else images
    total = total_sq = None
    count = 0
    for x in batches:
        wide = x.to(torch.int64)
        sums, squares = wide.sum(dim=(0, 2, 3)), (wide * wide).sum(dim=(0, 2, 3))
        total = sums if total is None else total + sums
        total_sq = squares if total_sq is None else total_sq + squares
        count += x.numel() // x.shape[1]
    if total is None or total_sq is None or count == 0:
        if not isinstance(images, torch.Tensor):
            raise ValueError("no images to compute mean/std from")
        return [0.0] * images.shape[1], [0.0] * images.shape[1]
    mean = total.double() / (255.0 * count)
    std = (total_sq.double() / (255.0 ** 2 * count) - mean * mean).clamp_min(0).sqrt()
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]
