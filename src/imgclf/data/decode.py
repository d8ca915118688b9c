"""Safe image decoding: the one place imgclf turns a file into pixels.

Every file is fully decoded (not just ``verify()``), EXIF orientation is applied,
only raster formats we trust are opened (never EPS/PostScript, which Pillow would
hand to Ghostscript), oversize images are refused before their pixels are
allocated, and odd modes are converted without losing range (16-bit grey is
scaled, not clipped). Any failure becomes :class:`ImageDecodeError` naming the
file and the reason, so callers never see a raw Pillow exception.
"""

from __future__ import annotations

import os
import stat
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps

from imgclf.errors import ImageDecodeError

# Formats opened at all. EPS/PS/PDF and other formats that run external programs are not here.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "TGA")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff",
                            ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".tga"})
DEFAULT_MAX_PIXELS = 50_000_000
WHITE = 255
EXIF_ORIENTATION = 0x0112

Mode = Literal["rgb", "gray", "keep"]
_OPEN_LOCK = threading.Lock()
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a grey-filled image


@dataclass
class Decoded:
    """A fully decoded image in mode L, RGB or I;16, plus what was done to get it there."""

    image: Image.Image
    format: str
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def is_image_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def decode_image(path: str | Path, mode: Mode = "keep", max_pixels: int = DEFAULT_MAX_PIXELS,
                 min_side: int = 0) -> Decoded:
    """Open, fully decode and normalise one image file; raise ImageDecodeError on any problem.

    ``min_side`` > 0 lets a JPEG be decoded at a reduced scale (1/2, 1/4 or 1/8, done inside the
    DCT, so much faster) as long as both sides stay at least ``min_side`` pixels.
    """
    path = Path(path)
    try:
        _require_regular_file(path)
        with _open(path) as img:
            if min_side > 0 and img.format == "JPEG" and img.width * img.height <= max_pixels:
                img.draft(None, (min_side, min_side))   # type: ignore[arg-type]
            return _decode_opened(img, mode, max_pixels)
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except PermissionError:
        raise ImageDecodeError(path, "permission denied (cannot read the file)") from None
    except IsADirectoryError:
        raise ImageDecodeError(path, "is a folder, not a file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(path, f"decompression bomb refused ({err})") from None
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(path, _unidentified_reason(path)) from None
    except MemoryError:
        raise ImageDecodeError(path, "not enough memory to decode it") from None
    except Exception as err:  # Pillow raises many types for corrupt data
        raise ImageDecodeError(path, f"corrupt or truncated image ({_short(err)})") from None


def _open(path: Path) -> Image.Image:
    """Pillow's open (header only), its decompression-bomb warning raised as an error. The warning
    filters are process-wide and ``catch_warnings`` is not thread-safe, so decoding threads take
    turns here; the open holds the GIL anyway, and the decode itself runs outside the lock."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path, formats=ALLOWED_FORMATS)


def _require_regular_file(path: Path) -> None:
    """Refuse FIFOs, sockets and devices before opening: reading a FIFO would block forever."""
    mode = os.stat(path).st_mode  # follows links; FileNotFoundError/PermissionError handled by the caller
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(path)
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise ImageDecodeError(path, f"not a regular file ({kind}); only image files are read")


def _decode_opened(img: Image.Image, mode: Mode, max_pixels: int) -> Decoded:
    notes: list[str] = []
    width, height = img.size
    if width * height > max_pixels:
        raise ImageDecodeError(img.filename, f"too large: {width}x{height} pixels is over the limit of "
                                             f"{max_pixels:,} (raise --max-pixels if it is genuine)")
    if width < 1 or height < 1:
        raise ImageDecodeError(img.filename, f"empty image ({width}x{height})")
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        notes.append(f"first of {frames} frames used")
    fmt = img.format or "?"
    if fmt == "PNG":
        _verify_png(img.filename)
    img.load()  # full decode: truncated or corrupt data fails here
    orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    oriented = img
    if orientation in range(2, 9):
        oriented = ImageOps.exif_transpose(img)
        notes.append(f"EXIF orientation {orientation} applied")
    return Decoded(convert_mode(oriented, mode, notes), fmt, notes)


def _verify_png(path: str) -> None:
    """Check every chunk's CRC up to IEND: a PNG cut short can otherwise decode as complete."""
    with Image.open(path, formats=("PNG",)) as img:
        img.verify()


def _unidentified_reason(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        return f"cannot read the file ({err.strerror})"
    if not head:
        return "empty file (0 bytes)"
    if head.startswith(b"%!PS") or head.startswith(b"\xc5\xd0\xd3\xc6"):
        return "PostScript/EPS is not accepted (it would need an external interpreter)"
    if head.startswith(b"%PDF"):
        return "a PDF document, not an image"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive, not an image"
    if head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml", b"<svg")):
        return "an HTML/XML/SVG text file, not a raster image"
    return "not a recognised image format"


def _short(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def convert_mode(img: Image.Image, mode: Mode, notes: list[str] | None = None) -> Image.Image:
    """Normalise any Pillow mode to L, RGB or (mode=keep only) I;16, keeping the value range."""
    notes = notes if notes is not None else []
    src = img.mode
    if src in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        out = _high_depth_to_16bit(img, notes) if mode == "keep" else _high_depth_to_8bit(img, notes)
        return out if mode != "rgb" else out.convert("RGB")
    if src == "1":
        notes.append("1-bit converted to grey")
        out = img.convert("L")
    elif src in ("RGBA", "LA", "PA", "RGBa", "La") or (src == "P" and "transparency" in img.info):
        out = _composite_on_white(img, notes)
    elif src == "L":
        out = img
    elif src == "P":
        notes.append("palette converted to RGB")
        out = img.convert("RGB")
    else:  # RGB, CMYK, YCbCr, LAB, HSV, RGBX ...
        if src not in ("RGB",):
            notes.append(f"{src} converted to RGB")
        out = img if src == "RGB" else img.convert("RGB")
    if mode == "rgb" and out.mode != "RGB":
        notes.append("grey converted to RGB")
        return out.convert("RGB")
    if mode == "gray" and out.mode != "L":
        notes.append("RGB converted to grey")
        return out.convert("L")
    return out


def _composite_on_white(img: Image.Image, notes: list[str]) -> Image.Image:
    notes.append(f"{img.mode}{' with transparency' if img.mode == 'P' else ''} composited on white")
    grey = img.mode in ("LA", "La")
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (WHITE, WHITE, WHITE, 255))
    out = Image.alpha_composite(background, rgba).convert("RGB")
    return out.convert("L") if grey else out


def _high_depth_array(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float64)
        finite = arr[np.isfinite(arr)]
        peak = float(finite.max()) if finite.size else 1.0
        scale = 65535.0 if peak <= 1.0 else (65535.0 / 255.0 if peak <= 255.0 else 65535.0 / max(peak, 1.0))
        arr = np.nan_to_num(arr * scale, nan=0.0, posinf=65535.0, neginf=0.0)
    return np.clip(arr, 0, 65535).astype(np.uint16)


def _high_depth_to_16bit(img: Image.Image, notes: list[str]) -> Image.Image:
    if img.mode == "I;16":
        return img
    notes.append(f"{img.mode} stored as 16-bit grey")
    return Image.fromarray(_high_depth_array(img))


def _high_depth_to_8bit(img: Image.Image, notes: list[str]) -> Image.Image:
    """Scale 0..65535 to 0..255 (rounded), instead of Pillow's clipping convert('L')."""
    notes.append(f"{img.mode} scaled from 16 to 8 bits")
    arr = _high_depth_array(img).astype(np.uint32)
    return Image.fromarray(((arr * 255 + 32767) // 65535).astype(np.uint8))


def to_uint8_array(decoded: Image.Image, channels: int) -> np.ndarray:
    """(H, W, channels) uint8 array of an image from :func:`decode_image`."""
    mode = "RGB" if channels == 3 else "L"
    img = decoded if decoded.mode == mode else convert_mode(decoded, "rgb" if channels == 3 else "gray")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def read_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from the header alone; None for anything unreadable or not a regular file."""
    path = Path(path)
    try:
        if not path.is_file():   # a FIFO or device named like an image would block the open
            return None
        with Image.open(path, formats=ALLOWED_FORMATS) as img:
            return img.size
    except Exception:  # an unreadable header is reported when the file is decoded
        return None
