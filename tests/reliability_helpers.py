"""Shared pieces of the reliability battery: the bad-image corpus, CLI subprocesses, figures.

The corpus is generated, never downloaded: every kind of file is built here with
PIL, zlib and struct, five (or more) files per kind, each with what must happen
to it (rejected with a reason, or accepted with the pixels given here).
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from conftest import bomb_png_bytes, draw_sample, jpeg_bytes, png_bytes
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
FIGURES_ENV = "IMGCLF_RELIABILITY_FIGURES"


# --- figures for RELIABILITY.md ---------------------------------------------------------

def record_figures(test: str, **figures: object) -> None:
    """Append one JSON line of observed figures to $IMGCLF_RELIABILITY_FIGURES (when set)."""
    target = os.environ.get(FIGURES_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(json.dumps({"test": test, **figures}, default=str) + "\n")


# --- subprocesses -------------------------------------------------------------------------

def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child python: src and tests importable, one thread, no TTY tricks."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), str(TESTS), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop(FIGURES_ENV, None)
    env.update(extra)
    return env


def run_imgclf(args: Sequence[str], timeout: float = 120, cwd: Path | None = None,
               user: int | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m imgclf ARGS`` in a real subprocess (exit code, stdout, stderr)."""
    return subprocess.run([sys.executable, "-m", "imgclf", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=child_env(), user=user)


def run_python(code: str, timeout: float = 120, user: int | None = None,
               args: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """``python -c CODE ARGS`` in a real subprocess."""
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=child_env(), user=user)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# --- the bad-image corpus -----------------------------------------------------------------

@dataclass
class Kind:
    """Files of one kind and what must become of them."""

    name: str
    files: dict[str, bytes]
    accept: bool                                   # False: must be rejected with a reason
    reason_words: tuple[str, ...] = ()             # rejected: one of these is in the reason
    expected: dict[str, np.ndarray] = field(default_factory=dict)   # accepted: pixels (mode keep)
    atol: int = 0                                  # accepted: tolerance (lossy formats)


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def gif_bomb_bytes(width: int, height: int) -> bytes:
    """A 30-byte GIF whose screen and frame declare ``width`` x ``height`` pixels."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x4c\x01\x00"
    return header + frame + b"\x3b"


def tiff_bomb_bytes(width: int, height: int) -> bytes:
    """A tiny TIFF declaring a huge uncompressed grey image (strip data missing)."""
    img = Image.new("L", (8, 8), 0)
    data = bytearray(_encode(img, "TIFF"))
    ifd = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[ifd:ifd + 2])[0]
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, typ = struct.unpack("<HH", data[entry:entry + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            if typ == 3:
                data[entry + 8:entry + 10] = struct.pack("<H", min(value, 65535))
            else:
                data[entry + 8:entry + 12] = struct.pack("<I", value)
    return bytes(data)


def eps_files() -> dict[str, bytes]:
    """PostScript that would run Ghostscript if handed to Pillow's EPS plugin."""
    body = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n"
            b"(/tmp/imgclf-eps-ran) (w) file closefile\nnewpath 0 0 moveto 64 64 lineto stroke\nshowpage\n%%EOF\n")
    dos = (b"\xc5\xd0\xd3\xc6" + struct.pack("<IIIIII", 30, len(body), 0, 0, 0, 0) + b"\xff\xff" + body)
    return {"eps_a.jpg": body, "eps_b.png": body.replace(b"3.0 EPSF", b"2.0 EPSF"), "eps_c.tif": dos,
            "eps_d.gif": b"%!PS-Adobe-3.0\n" + body[24:], "eps_e.bmp": dos[:-20]}


def _quadrants(width: int, height: int, tint: int) -> np.ndarray:
    """(H, W, 3) uint8 with four flat, distinct quadrants (top-left red, top-right green...)."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    h, w = height // 2, width // 2
    arr[:h, :w] = (230, 20, 20)
    arr[:h, w:] = (20, 200, 20)
    arr[h:, :w] = (20, 20, 230)
    arr[h:, w:] = (250 - tint, 250 - tint, 250 - tint)
    return arr


def stored_for_orientation(displayed: np.ndarray, orientation: int) -> np.ndarray:
    """The array a camera stores so that EXIF ``orientation`` displays as ``displayed`` (EXIF 2.3 spec)."""
    inverse = {1: lambda a: a, 2: np.fliplr, 3: lambda a: np.rot90(a, 2), 4: np.flipud,
               5: lambda a: np.transpose(a, (1, 0, 2)),
               6: lambda a: np.rot90(a, 1),                  # displayed = stored turned 90 deg clockwise
               7: lambda a: np.fliplr(np.rot90(a, 1)),       # displayed = stored mirrored, then turned clockwise
               8: lambda a: np.rot90(a, -1)}                 # displayed = stored turned 90 deg counter-clockwise
    return np.ascontiguousarray(inverse[orientation](displayed))


def orientation_files() -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """JPEGs with EXIF orientation 1..8, and the upright (48 wide x 32 high) pixels each must give."""
    files, expected = {}, {}
    for o in range(1, 9):
        upright = _quadrants(48, 32, tint=8 * o)
        exif = Image.Exif()
        exif[0x0112] = o
        name = f"exif_orientation_{o}.jpg"
        files[name] = jpeg_bytes(Image.fromarray(stored_for_orientation(upright, o)), exif=exif.tobytes(),
                                 quality=95, subsampling=0)
        expected[name] = upright
    return files, expected


def _truncations(data: bytes, cuts: Sequence[float | int], prefix: str, ext: str) -> dict[str, bytes]:
    out = {}
    for cut in cuts:
        n = int(len(data) * cut) if isinstance(cut, float) else len(data) + cut
        out[f"{prefix}_{n}of{len(data)}{ext}"] = data[:n]
    return out


def bad_image_corpus() -> list[Kind]:
    """At least 20 kinds x 5 files: what must be rejected and what must be read right."""
    good_jpg = jpeg_bytes(draw_sample("circle", 98, 64), quality=90)
    good_png = png_bytes(draw_sample("square", 97, 64))
    good_gif = _encode(draw_sample("cross", 96, 64).convert("P"), "GIF")
    kinds = [
        Kind("empty", {f"empty{ext}": b"" for ext in (".jpg", ".png", ".gif", ".tif", ".webp")}, False,
             ("empty file",)),
        Kind("truncated_jpeg", _truncations(good_jpg, (0.05, 0.25, 0.5, 0.75, -2), "cut", ".jpg"), False,
             ("truncated", "corrupt")),
        Kind("truncated_png", _truncations(good_png, (0.03, 0.25, 0.5, 0.75, -12), "cut", ".png"), False,
             ("truncated", "corrupt")),
        Kind("truncated_gif", _truncations(good_gif, (0.2, 0.4, 0.6, 0.8, 0.95), "cut", ".gif"), False,
             ("truncated", "corrupt")),
        Kind("text_as_jpg", {f"text{i}.jpg": (f"line {i}: not an image\n" * (i + 1)).encode() for i in range(5)},
             False, ("not a recognised image",)),
        Kind("html_as_jpg", {f"page{i}.jpg": (f"<!DOCTYPE html><html><body>404 {i}</body></html>" if i % 2
                                              else f"<html><head><title>{i}</title></head></html>").encode()
                             for i in range(5)}, False, ("HTML",)),
        Kind("zip_as_jpg", {f"archive{i}.jpg": _zip_bytes(i) for i in range(5)}, False, ("zip",)),
        Kind("pdf_as_png", {f"doc{i}.png": b"%PDF-1." + str(i).encode() + b"\n1 0 obj<<>>endobj\n%%EOF\n"
                            for i in range(5)}, False, ("PDF",)),
        Kind("png_bomb", {f"bomb_{w}x{h}.png": bomb_png_bytes(w, h) for w, h in
                          ((20000, 20000), (100000, 100000), (65535, 16000), (8000, 7000), (1, 60_000_000))},
             False, ("bomb", "too large")),
        Kind("gif_bomb", {f"gbomb_{w}x{h}.gif": gif_bomb_bytes(w, h) for w, h in
                          ((65535, 65535), (30000, 30000), (20000, 9000), (8000, 7000), (65535, 800))},
             False, ("bomb", "too large")),
        Kind("tiff_bomb", {f"tbomb_{w}x{h}.tif": tiff_bomb_bytes(w, h) for w, h in
                           ((100000, 100000), (65535, 65535), (30000, 30000), (8000, 7000), (60000, 1000))},
             False, ("bomb", "too large")),
        Kind("eps", eps_files(), False, ("PostScript", "not a recognised image")),
        Kind("magic_then_garbage", _garbage_with_magic(), False, ("corrupt", "truncated", "not a recognised")),
    ]
    return kinds + odd_kinds()


def _zip_bytes(i: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"photo{i}.jpg", b"not really" * (i + 1))
    return buf.getvalue()


def _garbage_with_magic() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    magic = {".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff\xe0", ".gif": b"GIF89a",
             ".bmp": b"BM", ".webp": b"RIFF\x00\x10\x00\x00WEBPVP8 "}
    return {f"garbage{ext}": head + rng.integers(0, 256, 400 + 300 * i, dtype=np.uint8).tobytes()
            for i, (ext, head) in enumerate(magic.items())}


def odd_kinds() -> list[Kind]:
    """Valid but awkward images and the pixels (as ``decode_image(mode='keep')`` must give) of each."""
    kinds: list[Kind] = []

    def add(name: str, items: dict[str, tuple[bytes, np.ndarray]], atol: int = 0) -> None:
        kinds.append(Kind(name, {k: v[0] for k, v in items.items()}, True,
                          expected={k: v[1] for k, v in items.items()}, atol=atol))

    rgb = [draw_sample(c, 50 + i, 24) for i, c in enumerate(("circle", "square", "cross", "triangle", "circle"))]
    add("tiff_named_png", {f"tiff{i}.png": (_encode(im, "TIFF"), np.asarray(im)) for i, im in enumerate(rgb)})
    cmyk = {}
    for i, (c, m, y) in enumerate(((0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 0, 0), (128, 0, 255))):
        cmyk[f"cmyk{i}.jpg"] = (jpeg_bytes(Image.new("CMYK", (8, 8), (c, m, y, 0)), quality=95),
                                np.full((8, 8, 3), (255 - c, 255 - m, 255 - y), dtype=np.uint8))
    add("cmyk_jpeg", cmyk, atol=12)
    palette = {}
    for i in range(5):
        img = Image.new("P", (8, 8), 1)
        img.putpalette([0, 0, 0, 40 * i, 200, 10] + [0] * 762)
        img.paste(0, (0, 0, 4, 8))
        img.info["transparency"] = 0
        want = np.zeros((8, 8, 3), dtype=np.uint8)
        want[:, :4] = 255
        want[:, 4:] = (40 * i, 200, 10)
        palette[f"palette_alpha{i}.png"] = (png_bytes(img), want)
    add("palette_transparency", palette)
    for fmt, ext in (("PNG", ".png"), ("TIFF", ".tif")):
        grey = {}
        for i in range(5):
            step = 600 + 40 * i + (7 if fmt == "TIFF" else 0)   # PNG and TIFF files differ (no duplicates)
            arr = (np.arange(96, dtype=np.uint32).reshape(8, 12) * step).clip(0, 65535).astype(np.uint16)
            arr[0, 0] = 65535 - i  # the top of the 16-bit range must survive
            grey[f"grey16_{i}{ext}"] = (_encode(Image.fromarray(arr), fmt), arr)
        add(f"grey16_{fmt.lower()}", grey)
    rgba, la, bit1, one = {}, {}, {}, {}
    for i in range(5):
        img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
        img.paste((10, 20 * i, 200, 255), (4, 0, 8, 8))
        want = np.full((8, 8, 3), 255, dtype=np.uint8)
        want[:, 4:] = (10, 20 * i, 200)
        rgba[f"rgba{i}.png"] = (png_bytes(img), want)
        img = Image.new("LA", (8, 8), (0, 0))
        img.paste((30 * i, 255), (0, 4, 8, 8))
        want = np.full((8, 8), 255, dtype=np.uint8)
        want[4:, :] = 30 * i
        la[f"la{i}.png"] = (png_bytes(img), want)
        bits = (np.indices((8, 8)).sum(0) % (i + 2) == 0)
        bit1[f"bit1_{i}.png"] = (png_bytes(Image.fromarray(bits)), np.where(bits, 255, 0).astype(np.uint8))
        colour = (10 + 40 * i, 200 - 30 * i, 77)
        fmt, ext = (("PNG", ".png"), ("GIF", ".gif"), ("BMP", ".bmp"), ("TIFF", ".tif"), ("WEBP", ".webp"))[i]
        px = Image.new("RGB", (1, 1), colour)
        data = _encode(px, fmt, lossless=True) if fmt == "WEBP" else _encode(px, fmt)
        one[f"one_pixel{i}{ext}"] = (data, reference_rgb(data) if fmt == "GIF" else np.asarray(px))
    add("rgba", rgba)
    add("la", la)
    add("bit1", bit1)
    add("one_pixel", one)
    files, expected = orientation_files()
    kinds.append(Kind("exif_orientation", files, True, expected=expected, atol=40))
    gifs, tiffs = {}, {}
    for i in range(5):
        frames = [Image.new("RGB", (10, 6), (40 * i, 250 - 40 * f, 30 * f)) for f in range(3 + i)]
        gifs[f"animated{i}.gif"] = (_encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40,
                                            loop=0), np.asarray(frames[0]))
        pages = [Image.new("RGB", (10, 6), (40 * i + 1, 251 - 40 * f, 30 * f)) for f in range(3 + i)]
        tiffs[f"pages{i}.tif"] = (_encode(pages[0], "TIFF", save_all=True, append_images=pages[1:]),
                                  np.asarray(pages[0]))
    gifs = {k: (data, reference_rgb(data)) for k, (data, _) in gifs.items()}
    add("animated_gif", gifs)
    add("multipage_tiff", tiffs)
    extreme = {}
    for i, (w, h) in enumerate(((1, 4000), (4000, 1), (2, 3000), (3000, 2), (1, 10000))):
        arr = (np.arange(w * h, dtype=np.uint32).reshape(h, w) * 7 % 251).astype(np.uint8)
        extreme[f"aspect_{w}x{h}.png"] = (png_bytes(Image.fromarray(arr)), arr)
    add("extreme_aspect", extreme)
    return kinds


def reference_rgb(data: bytes) -> np.ndarray:
    """Pillow's own RGB reading of the first frame (the reference for palette formats)."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def corpus_files(kinds: Sequence[Kind]) -> dict[str, bytes]:
    """name -> bytes of every file in ``kinds`` (names are unique across kinds)."""
    files: dict[str, bytes] = {}
    for kind in kinds:
        assert not set(kind.files) & set(files), kind.name
        files.update(kind.files)
    return files


def kind_of(kinds: Sequence[Kind]) -> dict[str, Kind]:
    return {name: kind for kind in kinds for name in kind.files}


def assert_pixels(actual: np.ndarray, expected: np.ndarray, atol: int, what: str) -> None:
    """Same shape and every value within ``atol`` (uint8 or uint16)."""
    if actual.ndim == 3 and actual.shape[2] == 1:
        actual = actual[:, :, 0]
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = np.abs(actual.astype(np.int64) - expected.astype(np.int64))
    assert int(diff.max(initial=0)) <= atol, f"{what}: pixels differ by up to {int(diff.max())} (> {atol})"
