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

@pytest.fixture(scope="session", autouse=True)
def machine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Measurements cached per machine (precision probes, backend choices) go to a fresh folder, not ~/.cache."""
    import os

    folder = tmp_path_factory.mktemp("xdg-cache")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    return folder


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


@pytest.fixture(scope="session", autouse=True)
def decode_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Decode caches and backend choices of test runs go to a temp folder, never the real ~/.cache, and
    the torch hub cache (--weights) too (children inherit both)."""
    import os

    home = tmp_path_factory.mktemp("xdg-cache")
    os.environ["XDG_CACHE_HOME"] = str(home)
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("torch-home"))
    return home


@pytest.fixture
def class_folders(tmp_path: Path) -> Path:
    """A raw class-folder tree: 3 classes x 10 PNG images of 32x32."""
    return make_class_folders(tmp_path / "raw")


def make_split_tree(root: Path, train_per_class: int = 16, val_per_class: int = 5, size: int = 32,
                    classes: tuple[str, ...] = ("circle", "square", "cross")) -> Path:
    """A prepared-style tree root/{train,val}/<class>/ of distinct generated images."""
    make_class_folders(root / "train", classes, train_per_class, size, seed=0)
    make_class_folders(root / "val", classes, val_per_class, size, seed=1)
    return root


@pytest.fixture(scope="session")
def split_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x (16 train + 5 val) images; 15 val images, an odd number on purpose."""
    return make_split_tree(tmp_path_factory.mktemp("data") / "shapes")


@pytest.fixture(scope="session")
def trained_run(split_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small run (small_cnn, 2 epochs) shared by the tests that need a trained model.

    fp32, not ``auto``: the precision probe may pick bf16 on one CPU and fp32 on another, and
    tests that compare evaluate with what training logged evaluate in fp32.
    """
    import imgclf

    out = tmp_path_factory.mktemp("runs") / "run"
    imgclf.train(split_data, out=out, model="small_cnn", epochs=2, batch_size=16, img_size=32, seed=0,
                 precision="fp32")
    return out


# --- bad and odd image files (prepare / decode tests) ---------------------------------

def png_bytes(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(img: Image.Image, **kwargs: object) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, "JPEG", **kwargs)
    return buf.getvalue()


def bomb_png_bytes(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header declares a huge 1-bit image (a decompression bomb)."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    idat = zlib.compress(row * 8, 9)  # far fewer rows than declared: never decoded anyway
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def exif_rotated_jpeg(size: tuple[int, int] = (20, 10), orientation: int = 6) -> bytes:
    """A JPEG stored as ``size`` whose EXIF says to rotate it (6 = 90 degrees clockwise)."""
    img = Image.new("RGB", size, (200, 30, 30))
    img.paste((30, 30, 200), (0, 0, size[0] // 2, size[1]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg_bytes(img, exif=exif.tobytes(), quality=95)


def odd_images() -> dict[str, bytes]:
    """Valid images in modes that need care: file name -> encoded bytes."""
    grey16 = Image.fromarray((np.arange(64, dtype=np.uint16).reshape(8, 8) * 1040))  # 0..65520
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(0, (0, 0, 4, 8))
    palette.info["transparency"] = 0
    la = Image.new("LA", (8, 8), (0, 0))
    la.paste((0, 255), (4, 0, 8, 8))
    return {
        "cmyk.jpg": jpeg_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), quality=95),
        "grey16.png": png_bytes(grey16),
        "palette_alpha.png": png_bytes(palette),
        "la.png": png_bytes(la),
        "rgba.png": png_bytes(Image.new("RGBA", (8, 8), (255, 0, 0, 0))),
        "bit1.png": png_bytes(Image.new("1", (8, 8), 1)),
        "exif_rotated.jpg": exif_rotated_jpeg(),
    }


def bad_files() -> dict[str, bytes]:
    """Files that must be rejected: file name -> bytes."""
    good_png = png_bytes(draw_sample("circle", 99, 64))
    good_jpg = jpeg_bytes(draw_sample("circle", 98, 64), quality=90)
    return {
        "empty.jpg": b"",
        "truncated.jpg": good_jpg[: len(good_jpg) * 6 // 10],
        "truncated.png": good_png[: len(good_png) * 6 // 10],
        "text.jpg": b"this is not an image, just text renamed to .jpg\n" * 4,
        "bomb.png": bomb_png_bytes(),
    }


def write_files(folder: Path, files: dict[str, bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]
