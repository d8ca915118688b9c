"""A data set whose class is decided only by a small patch at a random place on real photographs.

Backgrounds are random crops of scikit-image's bundled photographs (no download); every image
carries one small two-colour checkerboard patch, and the pair of colours is the class. Nothing
else in the image tells the classes apart, so a model that is right must look at the patch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "brick", "grass", "gravel", "camera", "moon", "coins", "clock")
PATCH_COLOURS = {"redgreen": ((230, 20, 20), (20, 210, 20)), "blueyellow": ((20, 40, 230), (235, 220, 20)),
                 "magentacyan": ((220, 20, 220), (20, 220, 220))}


def load_photos() -> list[np.ndarray]:
    """The bundled photographs as (H, W, 3) uint8 arrays."""
    import skimage.data

    photos = []
    for name in PHOTOS:
        image = np.asarray(getattr(skimage.data, name)())
        photos.append(np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3])
    return photos


def checkerboard(colours: tuple[tuple[int, int, int], tuple[int, int, int]], side: int, cell: int = 2) -> np.ndarray:
    """(side, side, 3) uint8 checkerboard of two colours in cells of ``cell`` pixels."""
    rows, cols = np.indices((side, side)) // cell
    return np.where(((rows + cols) % 2 == 0)[:, :, None], np.array(colours[0]), np.array(colours[1])).astype(np.uint8)


def background(photos: list[np.ndarray], rng: np.random.Generator, size: int) -> np.ndarray:
    """A random crop of a random photograph, scaled so the crop spans 1/8 to 1/2 of the photo's shorter side."""
    photo = photos[rng.integers(len(photos))]
    side = int(rng.integers(min(photo.shape[:2]) // 8, min(photo.shape[:2]) // 2))
    top, left = rng.integers(0, photo.shape[0] - side), rng.integers(0, photo.shape[1] - side)
    crop = Image.fromarray(photo[top:top + side, left:left + side])
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))


def make_patch_data(root: Path, train_per_class: int, val_per_class: int, size: int = 48, patch: int = 8,
                    classes: tuple[str, ...] = ("redgreen", "blueyellow"), seed: int = 0
                    ) -> dict[Path, tuple[int, int, int, int]]:
    """root/{train,val}/<class>/*.png; returns each val image's patch box (top, left, bottom, right), exclusive."""
    rng = np.random.default_rng(seed)
    photos = load_photos()
    boxes: dict[Path, tuple[int, int, int, int]] = {}
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = background(photos, rng, size).copy()
                top, left = (int(v) for v in rng.integers(0, size - patch + 1, size=2))
                image[top:top + patch, left:left + patch] = checkerboard(PATCH_COLOURS[cls], patch)
                path = folder / f"{cls}_{i:04d}.png"
                Image.fromarray(image).save(path)
                if split == "val":
                    boxes[path] = (top, left, top + patch, left + patch)
    return boxes


def peak_on_patch(peak: tuple[int, int], box: tuple[int, int, int, int]) -> bool:
    """Whether a heatmap maximum (row, col) lies on the patch."""
    row, col = peak
    return box[0] <= row < box[2] and box[1] <= col < box[3]
