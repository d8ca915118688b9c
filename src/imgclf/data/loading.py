"""Files -> uint8 tensors at the training resolution, decoded once.

``decode_resized`` is the single definition of the eval preprocessing geometry
(resize the shorter side, centre crop): training (memory, disk and streaming
modes alike), evaluation, prediction and enhancement all use it, so they see the
same pixels. A JPEG much larger than the target is decoded at a reduced DCT scale
first (Pillow's ``draft``), never below twice the target size, then resized.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from imgclf.console import progress
from imgclf.data.decode import decode_image, read_size
from imgclf.errors import ImageDecodeError

if TYPE_CHECKING:
    import torch

MAX_ASPECT = 8             # resize_center never makes the long side longer than this x img_size
PROCESS_MIN_IMAGES = 2048   # below this, threads decode (no start-up); from here, processes (no GIL)
CHUNK = 64
DRAFT_FACTOR = 2            # a reduced JPEG decode keeps at least 2x the target size (see GEOMETRY)
# Names how files become pixels: part of every decode cache's identity (change it when the pixels change).
GEOMETRY = "shorter side to S (bilinear), centre crop; JPEG DCT-reduced to >= 2S first"


def decode_resized(path: Path, img_size: int, channels: int) -> np.ndarray:
    """(channels, img_size, img_size) uint8: shorter side resized to img_size, centre crop."""
    img = decode_image(path, mode="rgb" if channels == 3 else "gray", min_side=DRAFT_FACTOR * img_size).image
    return resize_center(img, img_size)


def resize_center(img: Image.Image, img_size: int) -> np.ndarray:
    """An L or RGB image -> (C, S, S) uint8 with the shorter side at S and a centre crop.

    Resized and cropped as a Pillow image, one array copy at the end (the per-image cost of
    streaming and of building a cache)."""
    w, h = img.size
    scale = img_size / min(h, w)
    if max(h, w) * scale > MAX_ASPECT * img_size:
        # extreme aspect ratio (e.g. 2 x 20,000,000): only the centre survives the crop, so cut it out
        # first; resizing the whole strip would allocate (S x S*aspect) pixels, gigabytes for a thin line
        keep = min(max(h, w), math.ceil(MAX_ASPECT * img_size / scale))
        start = (max(h, w) - keep) // 2
        img = img.crop((0, start, w, start + keep)) if h > w else img.crop((start, 0, start + keep, h))
        w, h = img.size
    new_w, new_h = max(img_size, round(w * scale)), max(img_size, round(h * scale))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=None)
    top, left = (new_h - img_size) // 2, (new_w - img_size) // 2
    arr = np.asarray(img.crop((left, top, left + img_size, top + img_size)), dtype=np.uint8)
    return np.ascontiguousarray(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))


def _decode_chunk(args: tuple[list[Path], int, int]) -> list[np.ndarray | str]:
    paths, img_size, channels = args
    out: list[np.ndarray | str] = []
    for path in paths:
        try:
            out.append(decode_resized(path, img_size, channels))
        except ImageDecodeError as err:
            out.append(err.reason)
    return out


def decode_chunks(paths: Sequence[Path], img_size: int, channels: int, workers: int = 0,
                  desc: str = "decoding") -> Iterator[tuple[int, list[np.ndarray | str]]]:
    """(start index, decoded rows or failure reasons) for consecutive chunks of ``paths``, in order.

    ``workers`` (0: one per core) decode in threads for fewer than PROCESS_MIN_IMAGES files (Pillow
    releases the GIL while decoding, and a thread starts in microseconds: a predict call on 200
    images no longer decodes them one by one), in processes for more."""
    paths = list(paths)
    workers = workers if workers > 0 else (os.cpu_count() or 1)
    size = CHUNK if len(paths) >= PROCESS_MIN_IMAGES else max(1, min(CHUNK, -(-len(paths) // (4 * workers))))
    chunks = [(paths[i:i + size], img_size, channels) for i in range(0, len(paths), size)]
    bar = dict(total=len(chunks), desc=desc, unit="chunk")
    if workers == 1 or len(chunks) == 1:
        results: Iterator[list[np.ndarray | str]] = progress(map(_decode_chunk, chunks), **bar)
        yield from ((n * size, chunk) for n, chunk in enumerate(results))
        return
    pool_type = ProcessPoolExecutor if len(paths) >= PROCESS_MIN_IMAGES else ThreadPoolExecutor
    with pool_type(max_workers=workers) as pool:
        for n, chunk in enumerate(progress(pool.map(_decode_chunk, chunks), **bar)):
            yield n * size, chunk


def load_images(paths: Sequence[Path], img_size: int, channels: int, workers: int = 0,
                desc: str = "decoding") -> tuple[torch.Tensor, list[int], list[tuple[Path, str]]]:
    """Decode every file once: (uint8 tensor (N_ok, C, S, S), indices of the ok paths, [(path, reason)])."""
    import torch

    images, ok, errors = decode_files(paths, img_size, channels, workers, desc)
    return torch.from_numpy(images), ok, errors


def decode_files(paths: Sequence[Path], img_size: int, channels: int, workers: int = 0,
                 desc: str = "decoding") -> tuple[np.ndarray, list[int], list[tuple[Path, str]]]:
    """:func:`load_images` in numpy (no torch import: the path of ``predict`` on an ONNX export)."""
    paths = list(paths)
    results: list[np.ndarray | str] = []
    for _, chunk in decode_chunks(paths, img_size, channels, workers, desc):
        results += chunk
    ok = [i for i, r in enumerate(results) if not isinstance(r, str)]
    errors = [(paths[i], r) for i, r in enumerate(results) if isinstance(r, str)]
    images = np.stack([results[i] for i in ok]) if ok else np.empty((0, channels, img_size, img_size), np.uint8)
    return images, ok, errors


def median_side(paths: Sequence[Path], limit: int = 2000) -> int:
    """Median shorter side of up to ``limit`` images (headers only; unreadable files ignored)."""
    sizes = [read_size(p) for p in list(paths)[:: max(1, len(paths) // limit)]]
    sides = [min(size) for size in sizes if size is not None]
    return int(np.median(sides)) if sides else 0


def auto_img_size(paths: Sequence[Path]) -> int:
    """The default resolution: the median shorter side, rounded to a multiple of 16, within 32..224."""
    side = median_side(paths)
    return int(min(224, max(32, round(side / 16) * 16)))
