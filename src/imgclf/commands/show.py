"""``imgclf show DATA``: a grid PNG of random samples, each titled with its class."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgclf.config import ShowConfig
from imgclf.console import status, warn
from imgclf.data.decode import decode_image, to_uint8_array
from imgclf.data.stats import find_splits, list_labelled
from imgclf.errors import ImageDecodeError, ImgclfError
from imgclf.io import atomic_path, refuse_overwrite

CELL_INCHES = 1.6


@dataclass
class Result:
    out: Path
    samples: list[tuple[Path, str]] = field(default_factory=list)
    exit_code: int = 0


def pick_samples(root: Path, split: str, n: int, seed: int) -> list[tuple[Path, str]]:
    """``n`` seeded random (image, title) pairs of ``split``; titles join multi-label classes."""
    splits = find_splits(root)
    folder = splits.get(split) or splits.get("all")
    if folder is None:
        raise ImgclfError(f"{root}: no '{split}' split (found: {', '.join(splits)}); pass --split")
    titles: dict[Path, list[str]] = {}
    for path, cls in list_labelled(folder):
        titles.setdefault(path, []).append(cls)
    if not titles:
        raise ImgclfError(f"{folder}: no images in class folders; make them with: imgclf prepare RAW {root}")
    chosen = random.Random(seed).sample(sorted(titles), min(n, len(titles)))
    return [(path, "+".join(titles[path])) for path in chosen]


def load_plain(paths: list[Path]) -> list[np.ndarray | None]:
    """(H, W, C) uint8 arrays as stored (grey stays grey); None for unreadable files."""
    arrays: list[np.ndarray | None] = []
    for path in paths:
        try:
            img = decode_image(path, "keep").image
            arrays.append(to_uint8_array(img, 3 if img.mode == "RGB" else 1))
        except ImageDecodeError as err:
            warn(str(err))
            arrays.append(None)
    return arrays


def load_augmented(paths: list[Path], img_size: int, seed: int) -> list[np.ndarray | None]:
    """The images as training sees them: resized, centre-cropped, then the train augmentation."""
    try:
        import torch

        from imgclf.data.loading import decode_resized
        from imgclf.data.transforms import augment_batch
    except ImportError as err:
        raise ImgclfError(f"--augmented is not available ({err})") from err
    images = torch.from_numpy(np.stack([decode_resized(p, img_size, 3) for p in paths]))  # (N, C, H, W)
    generator = torch.Generator().manual_seed(seed)
    out = augment_batch(images, crop_padding=img_size // 8, hflip=True, generator=generator)
    return list(out.permute(0, 2, 3, 1).numpy())  # (H, W, C) each


def draw_grid(arrays: list[np.ndarray | None], titles: list[str], out: Path) -> None:
    """Save a titled grid of images to ``out`` atomically (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = math.ceil(math.sqrt(len(arrays)))
    rows = math.ceil(len(arrays) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * CELL_INCHES, rows * CELL_INCHES + 0.2), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, arr, title in zip(axes.flat, arrays, titles):
        if arr is None:
            ax.set_title(f"{title}\n(unreadable)", fontsize=8)
            continue
        grey = arr.shape[2] == 1
        ax.imshow(arr[:, :, 0] if grey else arr, cmap="gray" if grey else None, vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def run(cfg: ShowConfig) -> Result:
    out = Path(cfg.out)
    refuse_overwrite(out, cfg.force)
    samples = pick_samples(Path(cfg.data), cfg.split, cfg.n, cfg.seed)
    paths = [p for p, _ in samples]
    arrays = load_augmented(paths, cfg.img_size, cfg.seed) if cfg.augmented else load_plain(paths)
    draw_grid(arrays, [t for _, t in samples], out)
    status(f"wrote {out} ({len(samples)} {'augmented ' if cfg.augmented else ''}samples)")
    return Result(out, samples)
