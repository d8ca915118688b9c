"""Generate a raw image data set of N real-pixel JPEGs at about 256x256 in class folders.

Each class is one packaged photograph (scikit-image's colour and grey photographs, scikit-learn's
two sample photos); each image is a random crop of its photograph (35-90% of the shorter side,
anywhere in it, aspect 1.0-1.25), flipped half of the time, with colour jitter (brightness,
contrast, saturation) and a random JPEG quality (80-95), resized to 256 px high and 256-320 px
wide. Nothing is downloaded: every photograph ships inside an installed package. The task is
learnable (which photograph a crop comes from) but not trivial (crops overlap, colours vary).

    python benchmarks/scale_data.py OUT --num-images 10000 [--seed 0] [--workers 2]

Image i depends only on (seed, i), so a data set of 1,000 images is the first 1,000 of 10,000.
A finished folder carries ``.complete.json``; running again with the same settings does nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

HEIGHT_PX = 256
MAX_WIDTH_PX = 320
CHUNK = 200
MARKER = ".complete.json"
VERSION = 1

_PHOTOS: dict[str, np.ndarray] = {}


def load_photos() -> dict[str, np.ndarray]:
    """Class name -> (H, W, 3) uint8 photograph; 12 classes, all shipped inside installed packages."""
    import skimage.data as sk
    from sklearn.datasets import load_sample_images

    colour = {name: getattr(sk, name)() for name in ("astronaut", "coffee", "chelsea", "rocket",
                                                      "immunohistochemistry", "hubble_deep_field", "retina")}
    colour["motorcycle"] = sk.stereo_motorcycle()[0]
    china, flower = load_sample_images().images
    colour.update(china=china, flower=flower)
    grey = {name: np.repeat(getattr(sk, name)()[:, :, None], 3, axis=2) for name in ("camera", "moon")}
    return {name: shrink(img[:, :, :3]) for name, img in sorted({**colour, **grey}.items())}


def shrink(photo: np.ndarray, max_side: int = 640) -> np.ndarray:
    """The photograph with its shorter side at most ``max_side`` (crops then resize faster)."""
    h, w = photo.shape[:2]
    if min(h, w) <= max_side:
        return np.ascontiguousarray(photo)
    scale = max_side / min(h, w)
    img = Image.fromarray(photo).resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
    return np.asarray(img)


def class_names() -> list[str]:
    return sorted(load_photos())


def make_image(photo: np.ndarray, rng: np.random.Generator) -> tuple[Image.Image, int]:
    """One augmented crop of ``photo`` and its JPEG quality."""
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.35, 0.9))
    aspect = rng.uniform(1.0, MAX_WIDTH_PX / HEIGHT_PX)
    crop_w, crop_h = min(w, int(side * aspect)), side
    top, left = int(rng.integers(0, h - crop_h + 1)), int(rng.integers(0, w - crop_w + 1))
    img = Image.fromarray(photo[top:top + crop_h, left:left + crop_w])
    width = min(MAX_WIDTH_PX, round(HEIGHT_PX * crop_w / crop_h))
    img = img.resize((width, HEIGHT_PX), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer, low, high in ((ImageEnhance.Brightness, 0.7, 1.3), (ImageEnhance.Contrast, 0.7, 1.3),
                                (ImageEnhance.Color, 0.6, 1.4)):
        img = enhancer(img).enhance(float(rng.uniform(low, high)))
    return img, int(rng.integers(80, 96))


def image_path(root: Path, names: Sequence[str], index: int) -> Path:
    name = names[index % len(names)]
    return root / name / f"{name}_{index:06d}.jpg"


def _write_range(args: tuple[str, int, int, int]) -> int:
    root, start, stop, seed = args
    if not _PHOTOS:
        _PHOTOS.update(load_photos())
    names = sorted(_PHOTOS)
    for index in range(start, stop):
        rng = np.random.default_rng([seed, index])
        img, quality = make_image(_PHOTOS[names[index % len(names)]], rng)
        path = image_path(Path(root), names, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, "JPEG", quality=quality)
    return stop - start


def generate(out: Path, num_images: int, seed: int = 0, workers: int = 0) -> Path:
    """Write ``num_images`` JPEGs under ``out/<class>/``; skip when ``out`` is already complete."""
    settings = {"version": VERSION, "num_images": num_images, "seed": seed}
    marker = out / MARKER
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")).get("settings") == settings:
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ranges = [(str(out), i, min(i + CHUNK, num_images), seed) for i in range(0, num_images, CHUNK)]
    start = time.perf_counter()
    done = 0
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for count in pool.map(_write_range, ranges):
            done += count
            if sys.stderr.isatty():
                print(f"\rgenerating {done}/{num_images} images", end="", file=sys.stderr)
    elapsed_s = time.perf_counter() - start
    total_bytes = sum(p.stat().st_size for p in out.rglob("*.jpg"))
    marker.write_text(json.dumps({"settings": settings, "elapsed_s": round(elapsed_s, 1),
                                  "bytes": total_bytes, "classes": class_names()}, indent=1), encoding="utf-8")
    print(f"\r{num_images} images ({total_bytes / 1e6:.0f} MB) in {elapsed_s:.1f} s -> {out}", file=sys.stderr)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write (replaced unless already complete)")
    parser.add_argument("--num-images", type=int, default=1000, help="how many images (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the crops and jitter (default 0)")
    parser.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    args = parser.parse_args(argv)
    generate(args.out, args.num_images, args.seed, args.workers)


if __name__ == "__main__":
    main()
