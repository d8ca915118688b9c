"""Shared fixtures: tiny real image files written with PIL into tmp_path.

Each class is visibly different (its own colour and a shape), so a small model
learns them on the CPU in seconds.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

CLASS_COLOURS = {"circle": (220, 40, 40), "square": (40, 180, 60), "cross": (40, 70, 220),
                 "triangle": (200, 180, 30)}


def draw_sample(cls: str, index: int, size: int = 32, seed: int = 0) -> Image.Image:
    """One image of class ``cls``: its shape in its colour on a noisy background."""
    rng = np.random.default_rng(zlib.crc32(f"{cls}|{index}|{seed}".encode()))
    background = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    img = Image.fromarray(background)
    draw = ImageDraw.Draw(img)
    colour = tuple(int(c + rng.integers(-20, 20)) for c in CLASS_COLOURS[cls])
    m = int(size * 0.2 + rng.integers(0, max(1, size // 10)))
    box = (m, m, size - m, size - m)
    if cls == "circle":
        draw.ellipse(box, fill=colour)
    elif cls == "square":
        draw.rectangle(box, fill=colour)
    elif cls == "cross":
        draw.line((m, m, size - m, size - m), fill=colour, width=max(2, size // 8))
        draw.line((m, size - m, size - m, m), fill=colour, width=max(2, size // 8))
    else:
        draw.polygon([(size // 2, m), (m, size - m), (size - m, size - m)], fill=colour)
    return img


def make_class_folders(root: Path, classes: tuple[str, ...] = ("circle", "square", "cross"),
                       per_class: int = 10, size: int = 32, ext: str = ".png", seed: int = 0) -> Path:
    """root/<class>/<class>_<i><ext> for each class; returns root."""
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_sample(cls, i, size, seed).save(root / cls / f"{cls}_{i:03d}{ext}")
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root (to prove nothing changed)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture
def class_folders(tmp_path: Path) -> Path:
    """A raw class-folder tree: 3 classes x 10 PNG images of 32x32."""
    return make_class_folders(tmp_path / "raw")
