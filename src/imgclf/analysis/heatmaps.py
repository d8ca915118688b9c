"""Grad-CAM heatmaps as files: overlay PNGs per image and class, and a gallery of them.

Shared by ``imgclf explain`` and ``imgclf mistakes``. Each image gets an overlay for its predicted
class and, when its class is known and differs, one for the true class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imgclf.analysis.figures import gallery
from imgclf.analysis.saliency import CamSetup, grad_cam, peak_position
from imgclf.io import atomic_path

OVERLAY_MIN_SIDE_PX = 160   # small inputs are enlarged so the heatmap can be seen
HEAT_ALPHA = 0.45           # share of the colour map in the overlay
COLORMAP = "jet"


def overlay(image: np.ndarray, cam: np.ndarray, min_side: int = OVERLAY_MIN_SIDE_PX) -> np.ndarray:
    """(C, S, S) uint8 image and (S, S) map in [0, 1] -> (3, D, D) uint8 overlay, D = S * ceil(min_side / S)."""
    from matplotlib import colormaps

    size = image.shape[-1]
    side = size * max(1, math.ceil(min_side / size))
    rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image
    picture = Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 2, 0))).resize((side, side), Image.Resampling.NEAREST)
    heat = Image.fromarray(cam.astype(np.float32)).resize((side, side), Image.Resampling.BILINEAR)
    colours = colormaps[COLORMAP](np.clip(np.asarray(heat), 0.0, 1.0))[..., :3] * 255.0   # (D, D, 3)
    blended = (1.0 - HEAT_ALPHA) * np.asarray(picture, dtype=np.float64) + HEAT_ALPHA * colours
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8).transpose(2, 0, 1)


def save_png(array: np.ndarray, path: Path) -> Path:
    """Write a (3, H, W) uint8 array as a PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0))).save(tmp, format="PNG")
    return path


@dataclass(frozen=True)
class Heatmap:
    """The overlay files of one image and where each map peaks ((row, col) in model-input pixels)."""

    pred_png: Path
    pred_peak: tuple[int, int]
    true_png: Path | None           # None when the class is unknown; the pred file when it is the same class
    true_peak: tuple[int, int] | None


def write_heatmaps(setup: CamSetup, images: torch.Tensor, preds: np.ndarray, targets: np.ndarray | None,
                   stems: Sequence[str], folder: Path, batch_size: int = 32) -> list[Heatmap]:
    """Overlays ``folder/<stem>__pred.png`` (and ``__true.png`` where the true class differs) for every image.

    ``images`` uint8 (N, C, S, S); ``preds`` (N,); ``targets`` (N,) or None (class unknown; -1 = unknown too).
    """
    preds_t = torch.as_tensor(np.asarray(preds), dtype=torch.long)
    known = np.full(len(preds), -1) if targets is None else np.asarray(targets)
    true_t = torch.as_tensor(np.where(known >= 0, known, np.asarray(preds)), dtype=torch.long)
    pred_cams, true_cams = grad_cam(setup, images, [preds_t, true_t], batch_size)
    results = []
    for n, stem in enumerate(stems):
        image = images[n].numpy()
        pred_png = save_png(overlay(image, pred_cams[n]), folder / f"{stem}__pred.png")
        true_png, true_peak = None, None
        if known[n] >= 0:
            same = int(known[n]) == int(preds[n])
            true_png = pred_png if same else save_png(overlay(image, true_cams[n]), folder / f"{stem}__true.png")
            true_peak = peak_position(true_cams[n])
        results.append(Heatmap(pred_png, peak_position(pred_cams[n]), true_png, true_peak))
    return results


def heatmap_gallery(images: torch.Tensor, heatmaps: Sequence[Heatmap], titles: Sequence[tuple[str, str, str]],
                    path: Path, max_items: int = 24, suptitle: str = "") -> Path:
    """A grid of (image, predicted-class overlay, true-class overlay) triples, two per row."""
    panels, labels = [], []
    for n, (heatmap, (image_title, pred_title, true_title)) in enumerate(zip(heatmaps[:max_items], titles)):
        panels += [images[n].numpy(), _read_png(heatmap.pred_png)]
        labels += [image_title, pred_title]
        if heatmap.true_png is not None:
            panels.append(_read_png(heatmap.true_png))
            labels.append(true_title)
        else:
            panels.append(np.full_like(panels[-1], 255))
            labels.append("class unknown")
    return gallery(panels, labels, path, max_items=len(panels), cols=6, suptitle=suptitle)


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).transpose(2, 0, 1)
