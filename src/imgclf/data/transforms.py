"""Batched tensor transforms: augmentation on uint8 batches, normalisation to float.

They run on whole batches on the training device with a seeded generator, so
augmentation costs microseconds per image instead of a PIL call per image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Preprocess = Callable[[torch.Tensor], torch.Tensor]   # uint8 (B, C, H, W) -> same

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop back at a random offset per image (RandomCrop(pad=p)).

    images: (B, C, H, W) uint8 -> same shape; offsets uniform in [0, 2p] like torchvision.
    """
    if padding <= 0:
        return images
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(images.device)
    rows = (torch.arange(h, device=images.device)[None, :] + dy[:, None])      # (B, H)
    cols = (torch.arange(w, device=images.device)[None, :] + dx[:, None])      # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def random_hflip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability 1/2. images: (B, C, H, W)."""
    flip = (torch.rand(images.shape[0], generator=generator) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def augment_batch(images: torch.Tensor, crop_padding: int, hflip: bool,
                  generator: torch.Generator) -> torch.Tensor:
    """The train augmentation: random crop with padding, then random horizontal flip."""
    images = random_crop(images, crop_padding, generator)
    return random_hflip(images, generator) if hflip else images


def to_float(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
             channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, C, H, W) -> normalised float32 (B, C, H, W); mean/std are (C,) on the same device."""
    x = images.float().div_(255.0).sub_(mean[None, :, None, None]).div_(std[None, :, None, None])
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def normalization(kind: str, channels: int, train_mean: list[float] | None = None,
                  train_std: list[float] | None = None) -> tuple[list[float], list[float]]:
    """(mean, std) per channel for ``--normalize auto|imagenet|half``."""
    if kind == "imagenet":
        if channels == 3:
            return list(IMAGENET_MEAN), list(IMAGENET_STD)
        return [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
    if kind == "half":
        return [0.5] * channels, [0.5] * channels
    assert train_mean is not None and train_std is not None
    return train_mean, [max(s, 1e-3) for s in train_std]


def channel_stats(images: torch.Tensor, batch: int = 1024) -> tuple[list[float], list[float]]:
    """Per-channel mean and std on the 0..1 scale of a uint8 (N, C, H, W) tensor."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for i in range(0, images.shape[0], batch):
        x = images[i:i + batch].to(torch.float64).div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.numel() // c
    mean = total / max(count, 1)
    std = (total_sq / max(count, 1) - mean * mean).clamp_min(0).sqrt()
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]
