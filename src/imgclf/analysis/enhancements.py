"""Registry of intensity enhancements, each defined by a 256-entry transfer curve.

An enhancement maps grey levels 0..255 to 0..255. Three kinds exist:

* ``curve``: one look-up table for every image (linear, log, exponential, gamma);
* ``histogram``: a table computed from each image's own histogram (histeq, autocontrast);
* ``local``: a spatially varying mapping (CLAHE); its plotted curve is the mean
  output level per input level.

Register a new one with ``@register("name")`` on a function whose first argument is
the data (levels, histograms or images) and whose keyword arguments, with their
defaults, are the settable parameters. Applying them to image batches lives in
:mod:`imgclf.analysis.enhance`; reading ``--set``/``--preprocess`` text into
:class:`Variant` objects in :mod:`imgclf.config.enhancements`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

Kind = Literal["curve", "histogram", "local"]
LEVELS = np.arange(256, dtype=np.float64)  # the input grey levels of every curve


@dataclass(frozen=True)
class EnhancementSpec:
    """What the registry knows about one enhancement."""

    name: str
    kind: Kind
    fn: Callable[..., np.ndarray]
    defaults: dict[str, float]
    limits: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    integers: frozenset[str] = frozenset()
    summary: str = ""


ENHANCEMENTS: dict[str, EnhancementSpec] = {}


def register(name: str, kind: Kind = "curve", limits: dict[str, tuple[float | None, float | None]] | None = None,
             integers: tuple[str, ...] = ()) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Decorator: add ``fn`` to the registry; its keyword defaults become the parameters."""
    def decorate(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        params = list(inspect.signature(fn).parameters.values())[1:]
        defaults = {p.name: float(p.default) for p in params}
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        ENHANCEMENTS[name] = EnhancementSpec(name, kind, fn, defaults, dict(limits or {}),
                                             frozenset(integers), summary)
        return fn
    return decorate


def get_enhancement(name: str) -> EnhancementSpec:
    """The spec of a registered enhancement; KeyError lists the known names."""
    try:
        return ENHANCEMENTS[name]
    except KeyError:
        raise KeyError(f"unknown enhancement {name!r}; known: {', '.join(ENHANCEMENTS)}") from None


def list_enhancements() -> list[str]:
    return list(ENHANCEMENTS)


def to_lut(values: np.ndarray) -> np.ndarray:
    """Round and clip float curve values to a uint8 table (NaN -> 0, +inf -> 255)."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def curve_lut(name: str, params: dict[str, float] | None = None) -> np.ndarray:
    """The (256,) uint8 table of an image-independent (``curve``) enhancement."""
    spec = get_enhancement(name)
    if spec.kind != "curve":
        raise ValueError(f"{name} depends on the image; use transfer_curves with the image")
    with np.errstate(all="ignore"):
        return to_lut(spec.fn(LEVELS, **{**spec.defaults, **(params or {})}))


def histograms(planes: np.ndarray) -> np.ndarray:
    """(M, 256) int64 grey-level counts of (M, H, W) uint8 planes (Pillow's C histogram, per plane)."""
    planes = np.ascontiguousarray(planes, dtype=np.uint8)
    num, height, width = planes.shape
    counts = np.empty((num, 256), dtype=np.int64)
    for index, plane in enumerate(planes):
        counts[index] = Image.frombuffer("L", (width, height), plane, "raw", "L", 0, 1).histogram()
    return counts


# --- curve enhancements: f(levels 0..255 as float64) -> output levels -------------------------

@register("linear")
def linear(x: np.ndarray, a: float = 1.5, b: float = -64.0) -> np.ndarray:
    """a*x + b, clipped to [0, 255]; the default stretches 43..213 to 0..255 around mid-grey."""
    return a * x + b


@register("log", limits={"c": (0.0, None)})
def log(x: np.ndarray, c: float = 255.0 / np.log(256.0)) -> np.ndarray:
    """c*log(1 + x); the default c = 255/log(256) maps 255 to 255 and brightens dark tones."""
    return c * np.log1p(x)


@register("exponential", limits={"b": (0.0, None)})
def exponential(x: np.ndarray, b: float = 2.0, c: float = 8.0 / 255.0, a: float = 0.0) -> np.ndarray:
    """b^(c*(x - a)) - 1; the default 2^(8x/255) - 1 maps 0..255 onto 0..255 and darkens mid-tones."""
    return np.power(b, c * (x - a)) - 1.0


@register("gamma", limits={"eps": (0.0, None)})
def gamma(x: np.ndarray, g: float = 0.5, eps: float = 0.0) -> np.ndarray:
    """255*((x/255) + eps)^g; g < 1 brightens, g > 1 darkens."""
    return 255.0 * np.power(x / 255.0 + eps, g)


# --- histogram enhancements: f(hists (M, 256)) -> curves (M, 256) ------------------------------

@register("histeq", kind="histogram")
def histeq(hist: np.ndarray) -> np.ndarray:
    """Histogram equalization: the curve is the image's own normalised cumulative histogram."""
    cdf = np.cumsum(hist, axis=1, dtype=np.float64)
    first = np.take_along_axis(cdf, np.argmax(hist > 0, axis=1)[:, None], axis=1)  # count of the darkest level
    span = cdf[:, -1:] - first
    flat = span[:, 0] <= 0  # one grey level only: keep the image as it is
    curves = (cdf - first) / np.where(flat[:, None], 1.0, span) * 255.0
    curves[flat] = LEVELS
    return np.maximum(curves, 0.0)


@register("histeq_linear", kind="histogram")
def histeq_linear(hist: np.ndarray, a: float = 0.8, b: float = 26.0) -> np.ndarray:
    """Histogram equalization followed by a*x + b; the default softens it to 26..230."""
    return a * np.rint(histeq(hist)) + b


@register("autocontrast", kind="histogram", limits={"low": (0.0, 100.0), "high": (0.0, 100.0)})
def autocontrast(hist: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Stretch the low..high percentile of the image's levels to 0..255."""
    cdf = np.cumsum(hist, axis=1, dtype=np.float64)
    total = cdf[:, -1:]
    lo = np.argmax(cdf > total * (low / 100.0), axis=1).astype(np.float64)[:, None]
    hi = np.argmax(cdf >= total * (high / 100.0), axis=1).astype(np.float64)[:, None]
    flat = (hi <= lo)[:, 0]
    curves = (LEVELS - lo) * 255.0 / np.where(hi > lo, hi - lo, 1.0)
    curves[flat] = LEVELS
    return curves


# --- local enhancements: f(planes (M, H, W) uint8) -> planes (M, H, W) uint8 ------------------

@register("clahe", kind="local", limits={"tiles": (1, 64), "clip": (1.0, None)}, integers=("tiles",))
def clahe(planes: np.ndarray, tiles: float = 8, clip: float = 2.0) -> np.ndarray:
    """CLAHE on tiles x tiles regions of at least 8x8 pixels; clip is in multiples of the mean bin count."""
    return clahe_planes(planes, int(tiles), float(clip))


MIN_TILE_PIXELS = 8  # tiles are never smaller than 8 x 8 pixels, whatever ``tiles`` asks for
MAX_TILE_BINS = 1 << 21  # histogram bins per pass (planes x tiles x 256), about 8 MB of float32


def clahe_planes(planes: np.ndarray, tiles: int = 8, clip: float = 2.0) -> np.ndarray:
    """Vectorised CLAHE: clipped per-tile equalization curves, bilinearly blended between tile centres."""
    num, height, width = planes.shape
    tiles_y = max(1, min(tiles, height // MIN_TILE_PIXELS))
    tiles_x = max(1, min(tiles, width // MIN_TILE_PIXELS))
    step = max(1, MAX_TILE_BINS // (tiles_y * tiles_x * 256))
    if num > step:
        return np.concatenate([clahe_planes(planes[i:i + step], tiles, clip) for i in range(0, num, step)])
    row_tile = (np.arange(height) * tiles_y) // height  # tile row of each pixel row
    col_tile = (np.arange(width) * tiles_x) // width
    tile_index = row_tile[:, None] * tiles_x + col_tile[None, :]  # (H, W)
    num_tiles = tiles_y * tiles_x
    codes = (np.arange(num, dtype=np.int64)[:, None, None] * num_tiles + tile_index) * 256 + planes
    hist = np.bincount(codes.ravel(), minlength=num * num_tiles * 256).reshape(num, num_tiles, 256)
    luts = _clipped_equalization(hist, clip)  # (M, T, 256) float32
    y0, y1, wy = _blend_weights(height, tiles_y)
    x0, x1, wx = _blend_weights(width, tiles_x)
    flat = luts.reshape(num, -1)
    base = (np.arange(num, dtype=np.int64) * num_tiles * 256)[:, None, None] + planes

    def sample(ty: np.ndarray, tx: np.ndarray) -> np.ndarray:
        offset = (ty[:, None] * tiles_x + tx[None, :]) * 256  # (H, W)
        return np.take(flat, base + offset)

    top = sample(y0, x0) * (1 - wx) + sample(y0, x1) * wx
    bottom = sample(y1, x0) * (1 - wx) + sample(y1, x1) * wx
    out = top * (1 - wy[:, None]) + bottom * wy[:, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _clipped_equalization(hist: np.ndarray, clip: float) -> np.ndarray:
    """Per-tile curves: clip each histogram at clip x its mean bin, spread the excess evenly, equalize."""
    counts = hist.sum(axis=-1, keepdims=True, dtype=np.float32)  # (M, T, 1)
    limit = np.maximum(np.float32(clip / 256.0) * counts, np.float32(1.0))
    clipped = np.minimum(hist, limit, dtype=np.float32)
    spread = (counts - clipped.sum(axis=-1, keepdims=True)) / np.float32(256.0)  # excess per bin
    cdf = np.cumsum(clipped, axis=-1, dtype=np.float32)
    cdf += spread * np.arange(1, 257, dtype=np.float32)
    cdf *= np.float32(255.0) / np.maximum(counts, np.float32(1.0))
    return cdf


def _blend_weights(size: int, num_tiles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pixel along one axis: the two nearest tile centres and the weight of the second."""
    centre = (np.arange(size) + 0.5) * num_tiles / size - 0.5  # position in tile units
    first = np.clip(np.floor(centre), 0, num_tiles - 1).astype(np.int64)
    second = np.minimum(first + 1, num_tiles - 1)
    weight = np.clip(centre - first, 0.0, 1.0).astype(np.float32)
    weight[second == first] = 0.0
    return first, second, weight


# --- variants: an enhancement with concrete parameter values ----------------------------------

@dataclass(frozen=True)
class Variant:
    """One enhancement with all its parameters set (defaults filled in)."""

    name: str
    params: dict[str, float]

    @property
    def params_text(self) -> str:
        """``g=0.5,eps=0``: the parameters as written in CSV files and ``--preprocess``."""
        return ",".join(f"{key}={value:.6g}" for key, value in self.params.items())

    @property
    def label(self) -> str:
        return f"{self.name}:{self.params_text}" if self.params else self.name
