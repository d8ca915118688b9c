"""Apply enhancements to uint8 image batches, and score what re-prediction says about them.

Images are (N, C, H, W) uint8, numpy or torch; the result has the input's type. Work is done
in chunks of about half a million pixels so the float32 temporaries stay in cache: one table
look-up per pixel (Pillow's C loop), one Pillow histogram per plane for image-dependent
curves, and single-threaded numpy for the colour arithmetic (torch's thread pool is faster on
an idle machine but many times slower when other processes share the cores).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from imgclf.analysis.enhancements import (LEVELS, Variant, curve_lut, get_enhancement, histograms,
                                          to_lut)
from imgclf.config.enhancements import parse_variant

if TYPE_CHECKING:   # torch is imported only where a tensor is made: --preprocess runs without it
    import torch

    from imgclf.data.transforms import Preprocess

ColorMode = Literal["luma", "channels"]
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601
CHUNK_PIXELS = 1 << 19  # pixels per chunk (~40 images of 112x112): big enough for threads, small for cache


def _as_numpy(images: Any) -> tuple[np.ndarray, bool]:
    """(array, was_torch): a view of a CPU tensor; only a device tensor is copied."""
    if isinstance(images, np.ndarray):
        return images, False
    return images.detach().cpu().numpy(), True


def _check_batch(images: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 images (N, 1|3, H, W), got {images.dtype} {tuple(images.shape)}")


def luma(images: Any) -> np.ndarray:
    """(N, H, W) uint8 BT.601 luminance Y = 0.299 R + 0.587 G + 0.114 B (grey images: the plane)."""
    array, _ = _as_numpy(images)
    if array.shape[1] == 1:
        return array[:, 0]
    y = array[:, 0] * np.float32(LUMA_WEIGHTS[0])
    y += array[:, 1] * np.float32(LUMA_WEIGHTS[1])
    y += array[:, 2] * np.float32(LUMA_WEIGHTS[2])
    return np.rint(y, out=y).astype(np.uint8)


def _chunk_images(shape: tuple[int, ...]) -> int:
    """How many images of this shape make one chunk of about CHUNK_PIXELS pixels."""
    return max(1, CHUNK_PIXELS // max(1, shape[-1] * shape[-2]))


def lookup(planes: np.ndarray, luts: np.ndarray) -> np.ndarray:
    """Map (M, H, W) uint8 planes through one (256,) table or one table per plane (M, 256).

    Pillow's ``Image.point`` does the look-up: about 3x faster than numpy fancy indexing.
    """
    planes = np.ascontiguousarray(planes)
    out = np.empty_like(planes)
    if luts.ndim == 1:
        table, chunk = luts.tolist(), _chunk_images(planes.shape)
        for start in range(0, planes.shape[0], chunk):
            out[start:start + chunk] = _point(planes[start:start + chunk], table)
        return out
    for index, plane in enumerate(planes):
        out[index] = _point(plane[None], luts[index].tolist())[0]
    return out


def _point(planes: np.ndarray, table: list[int]) -> np.ndarray:
    rows = planes.reshape(-1, planes.shape[-1])
    image = Image.frombuffer("L", (rows.shape[1], rows.shape[0]), rows, "raw", "L", 0, 1)
    return np.asarray(image.point(table)).reshape(planes.shape)


def map_planes(planes: np.ndarray, name: str, params: dict[str, float] | None = None) -> np.ndarray:
    """Map (M, H, W) uint8 grey planes through an enhancement; uint8 out."""
    spec = get_enhancement(name)
    params = {**spec.defaults, **(params or {})}
    if spec.kind == "curve":
        return lookup(planes, curve_lut(name, params))
    if spec.kind == "histogram":
        return lookup(planes, transfer_curves(planes, name, params))
    return spec.fn(np.ascontiguousarray(planes), **params)


def transfer_curves(planes: np.ndarray, name: str, params: dict[str, float] | None = None) -> np.ndarray:
    """(M, 256) uint8: the curve applied to each plane (for local ones, the mean output per level)."""
    spec = get_enhancement(name)
    params = {**spec.defaults, **(params or {})}
    num = planes.shape[0]
    if spec.kind == "curve":
        return np.broadcast_to(curve_lut(name, params), (num, 256)).copy()
    if spec.kind == "histogram":
        with np.errstate(all="ignore"):
            return to_lut(spec.fn(histograms(planes), **params))
    return _empirical_curves(planes, spec.fn(planes, **params))


def _empirical_curves(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Mean output level per input level; absent levels are interpolated from their neighbours."""
    counts = histograms(before).astype(np.float64)
    offsets = (np.arange(before.shape[0], dtype=np.int64) * 256)[:, None, None]
    sums = np.bincount((before + offsets).ravel(), weights=after.ravel().astype(np.float64),
                       minlength=before.shape[0] * 256).reshape(-1, 256)
    curves = np.empty_like(sums)
    for row, (total, count) in enumerate(zip(sums, counts)):
        seen = count > 0
        curves[row] = np.interp(LEVELS, LEVELS[seen], total[seen] / count[seen]) if seen.any() else LEVELS
    return to_lut(curves)


INVERSE_LEVELS = np.r_[np.float32(0), 1 / np.arange(1, 256, dtype=np.float32)]  # 1/Y, 0 for Y = 0


def _recolor(images: np.ndarray, y: np.ndarray, y_new: np.ndarray) -> np.ndarray:
    """Scale RGB by Y'/Y so hue and saturation stay; where Y = 0 (no hue), add Y' to each channel."""
    ratio = INVERSE_LEVELS[y]
    ratio *= y_new
    dark = y == 0
    out = images.astype(np.float32)
    if dark.any():
        ratio[dark] = 1.0
        out += np.where(dark, y_new, 0).astype(np.float32)[:, None]
    out *= ratio[:, None]
    out += np.float32(0.5)  # round half up in the cast below; values are never negative
    return np.minimum(out, np.float32(255), out=out).astype(np.uint8)


def _enhance_chunk(images: np.ndarray, name: str, params: dict[str, float], color: ColorMode) -> np.ndarray:
    num, channels, height, width = images.shape
    if channels == 1 or color == "channels":
        planes = np.ascontiguousarray(images).reshape(num * channels, height, width)
        return map_planes(planes, name, params).reshape(images.shape)
    y = luma(images)
    return _recolor(images, y, map_planes(y, name, params))


def apply_enhancement(images: Any, name: str, params: dict[str, float] | None = None,
                      color: ColorMode = "luma") -> Any:
    """Enhance a (N, C, H, W) uint8 batch (numpy or torch); same type, shape and dtype out.

    Grey images are mapped directly. Colour images are mapped on BT.601 luminance (``luma``,
    keeps hue) or on each channel separately (``channels``). Image-dependent curves (histeq,
    autocontrast, CLAHE) are computed per image (per channel in ``channels`` mode).
    """
    array, was_torch = _as_numpy(images)
    _check_batch(array)
    if color not in ("luma", "channels"):
        raise ValueError(f"color must be luma or channels, got {color!r}")
    out = np.empty_like(array)
    chunk = _chunk_images(array.shape)
    for start in range(0, array.shape[0], chunk):
        out[start:start + chunk] = _enhance_chunk(array[start:start + chunk], name, params or {}, color)
    if not was_torch:
        return out
    import torch

    return torch.from_numpy(out).to(images.device)


def make_preprocess(spec: str, color: ColorMode = "luma") -> Preprocess | None:
    """``--preprocess``: ``none`` -> None; ``histeq`` / ``gamma:g=0.5`` -> a function on uint8 (B, C, H, W)."""
    if spec in ("", "none"):
        return None
    variant = parse_variant(spec, flag="--preprocess")
    return functools.partial(apply_enhancement, name=variant.name, params=variant.params, color=color)


def apply_variants(images: Any, variants: Sequence[Variant], color: ColorMode = "luma") -> list[Any]:
    """One enhanced copy of the batch per variant, in order."""
    return [apply_enhancement(images, v.name, v.params, color) for v in variants]


# --- re-prediction of every variant, and what it changed ---------------------------------------

Predict = Callable[["torch.Tensor"], Any]  # uint8 (B, C, H, W) -> (B, K) probabilities
BATCH_IMAGES = 2048  # images per predict call: original + all variants of a chunk together


def predict_variants(images: torch.Tensor, variants: Sequence[Variant], predict: Predict,
                     color: ColorMode = "luma", batch_images: int = BATCH_IMAGES) -> np.ndarray:
    """(1 + V, N, K) float32 probabilities of the originals and of every variant.

    Each chunk of images is enhanced by every variant and the copies are concatenated, so the
    model sees one large batch per chunk instead of one pass per image or per variant.
    """
    import torch

    num_versions = 1 + len(variants)
    chunk = max(1, batch_images // num_versions)
    parts = []
    for start in range(0, images.shape[0], chunk):
        originals = images[start:start + chunk]
        batch = torch.cat([originals, *apply_variants(originals, variants, color)])
        probs = np.asarray(predict(batch), dtype=np.float32)  # (num_versions * n, K)
        parts.append(probs.reshape(num_versions, originals.shape[0], -1))
    if not parts:
        return np.zeros((num_versions, 0, 0), dtype=np.float32)
    return np.concatenate(parts, axis=1)


@dataclass(frozen=True)
class VariantScore:
    """One row of enhance/summary.csv; counts are over the images with a known label."""

    transform: str
    params: str
    num_images: int
    accuracy: float | None
    rescued: int
    broken: int
    mean_delta_true_prob: float | None

    @property
    def net_gain(self) -> int:
        return self.rescued - self.broken

    def row(self) -> list[Any]:
        def fmt(value: float | None) -> str:
            return "" if value is None else f"{value:.6f}"

        return [self.transform, self.params, self.num_images, fmt(self.accuracy), self.rescued, self.broken,
                self.net_gain, fmt(self.mean_delta_true_prob)]


SUMMARY_COLUMNS = ("transform", "params", "num_images", "accuracy", "rescued", "broken", "net_gain",
                   "mean_delta_true_prob")


def score_variants(targets: np.ndarray, all_probs: np.ndarray, variants: Sequence[Variant]) -> list[VariantScore]:
    """The ``original`` row first, then every variant by net gain (rescued - broken), best first.

    ``targets`` (N,) holds -1 for images without a known class; they count in ``num_images``
    but not in accuracy, rescued, broken or the true-class probability change.
    """
    targets = np.asarray(targets)
    known = targets >= 0
    rows = np.flatnonzero(known)
    right = all_probs.argmax(axis=2)[:, known] == targets[known]  # (1 + V, n_known)
    true_p = all_probs[:, rows, targets[known]] if rows.size else np.zeros((all_probs.shape[0], 0))
    names = [("original", "")] + [(v.name, v.params_text) for v in variants]
    scores = []
    for index, (name, params) in enumerate(names):
        has = bool(rows.size)
        scores.append(VariantScore(
            name, params, int(targets.size),
            float(right[index].mean()) if has else None,
            int(np.sum(~right[0] & right[index])), int(np.sum(right[0] & ~right[index])),
            float(np.mean(true_p[index] - true_p[0])) if has else None))
    ranked = sorted(scores[1:], key=lambda s: (-s.net_gain, -(s.mean_delta_true_prob or 0.0)))
    return [scores[0], *ranked]


@dataclass(frozen=True)
class FigurePick:
    """An image chosen for a per-image figure, and why: rescued, broken, mistake, correct, changed, other."""

    index: int
    reason: str


def pick_figures(targets: np.ndarray, all_probs: np.ndarray, count: int) -> list[FigurePick]:
    """The ``count`` images whose figures say the most, from (N,) targets (-1 unknown) and (1 + V, N, K) probs.

    First the mistakes some enhancement rescues (largest gain of the true-class probability first),
    then the correct images some enhancement breaks (largest loss first), then the other mistakes
    (highest loss, i.e. lowest true-class probability, first), then the correct images (least sure
    first). Images without a known class follow: those whose predicted class some enhancement
    changes, then the rest, in their order.
    """
    targets = np.asarray(targets)
    n = targets.size
    preds = all_probs.argmax(axis=2)                                   # (1 + V, N)
    known = np.flatnonzero(targets >= 0)
    true_p = all_probs[:, known, targets[known]]                       # (1 + V, n_known)
    right = preds[:, known] == targets[known]                          # (1 + V, n_known)
    gain = (true_p[1:] - true_p[:1]).max(axis=0, initial=-np.inf)    # best change over the variants
    drop = (true_p[:1] - true_p[1:]).max(axis=0, initial=-np.inf)
    rescued = ~right[0] & right[1:].any(axis=0)
    broken = right[0] & ~right[1:].all(axis=0)
    wrong, fine = ~right[0] & ~rescued, right[0] & ~broken
    groups = [("rescued", known[rescued], -gain[rescued]), ("broken", known[broken], -drop[broken]),
              ("mistake", known[wrong], true_p[0, wrong]), ("correct", known[fine], true_p[0, fine])]
    unknown = np.flatnonzero(targets < 0)
    changed = (preds[:, unknown] != preds[:1, unknown]).any(axis=0)
    groups += [("changed", unknown[changed], np.zeros(int(changed.sum()))),
               ("other", unknown[~changed], np.zeros(int((~changed).sum())))]
    picks = [FigurePick(int(i), reason) for reason, members, keys in groups
             for i in members[np.argsort(keys, kind="stable")]]
    return picks[:min(count, n)]
