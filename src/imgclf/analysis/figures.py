"""Matplotlib figures for mistakes and enhancement: galleries, per-image panels, summary chart.

Matplotlib is imported inside the functions (Agg backend, no display needed) so importing
this module stays cheap. Every PNG is written atomically through :func:`imgclf.io.atomic_path`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.io import atomic_path
from imgclf.reporting.plots import pyplot

PANEL_IN = 2.4  # inches per image panel
DPI = 100


def to_display(image: Any) -> np.ndarray:
    """(C, H, W) uint8 numpy/torch -> (H, W) grey or (H, W, 3) RGB for imshow."""
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    return array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))


def _show(ax: Any, image: Any, title: str, fontsize: float = 8) -> None:
    shown = to_display(image)
    ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(title, fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig: Any, path: Path) -> Path:
    plt = pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def gallery(images: Sequence[Any], titles: Sequence[str], path: Path, max_items: int = 36, cols: int = 6,
            suptitle: str = "") -> Path:
    """A grid of up to ``max_items`` images (C, H, W) uint8, each with its title; PNG at ``path``."""
    plt = pyplot()
    count = min(len(images), max_items)
    cols = max(1, min(cols, count or 1))
    rows = max(1, math.ceil(count / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * PANEL_IN, rows * PANEL_IN + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for index in range(count):
        ax = axes.ravel()[index]
        ax.axis("on")
        _show(ax, images[index], titles[index])
    if count == 0:
        axes[0, 0].text(0.5, 0.5, "no images", ha="center", va="center", fontsize=12)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.45 / fig.get_figheight()) if suptitle else None)
    return _save(fig, path)


@dataclass(frozen=True)
class Panel:
    """One version of an image for the per-image figure: the pixels, the curve applied, a title."""

    image: Any            # (C, H, W) uint8
    curve: np.ndarray     # (256,) uint8 transfer curve, or (3, 256) one per RGB channel
    title: str


def _luma_hist(image: Any) -> np.ndarray:
    shown = to_display(image).astype(np.float32)
    y = shown if shown.ndim == 2 else shown @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    counts = np.bincount(np.clip(np.rint(y), 0, 255).astype(np.int64).ravel(), minlength=256)
    return 100.0 * counts / max(counts.sum(), 1)


LEVEL_TICKS = (0, 128, 255)


def _draw_curve(ax: Any, curve: np.ndarray) -> None:
    levels = np.arange(256)
    ax.plot(levels, levels, color="0.75", lw=0.8, ls="--")
    curves = np.atleast_2d(curve)
    colours = ["tab:blue"] if len(curves) == 1 else ["tab:red", "tab:green", "tab:blue"]
    for values, colour in zip(curves, colours):
        ax.plot(levels, values, color=colour, lw=1.4)
    ax.set(xlim=(0, 255), ylim=(0, 255), xticks=LEVEL_TICKS, yticks=LEVEL_TICKS)
    ax.set_xlabel("input level", fontsize=7)
    ax.set_ylabel("output level", fontsize=7)
    ax.set_title("transfer curve", fontsize=7)


def _draw_histogram(ax: Any, before: np.ndarray, after: np.ndarray, legend: bool) -> None:
    levels = np.arange(256)
    ax.fill_between(levels, before, color="0.6", alpha=0.6, step="mid", label="original")
    ax.plot(levels, after, color="tab:orange", lw=1.0, label="this version")
    top = float(max(before.max(), after.max(), 1e-3))
    ax.set(xlim=(0, 255), ylim=(0, top * 1.05), xticks=LEVEL_TICKS, yticks=(0, round(top, 1)))
    ax.set_xlabel("luminance level", fontsize=7)
    ax.set_ylabel("pixels (%)", fontsize=7)
    ax.set_title("histogram", fontsize=7)
    if legend:
        ax.legend(fontsize=6, loc="upper right")


def _clear(ax: Any) -> None:
    """Remove the data artists of an axes but keep the axes (creating axes is the slow part)."""
    for artist in [*ax.lines, *ax.collections, *ax.images]:
        artist.remove()
    if ax.get_legend() is not None:
        ax.get_legend().remove()


class EnhancementFigures:
    """Per-image enhancement figures: each version (original first), its transfer curve, its histogram.

    The axes are built once and only their contents change from image to image, and ticks are
    fixed (0, 128, 255): axes creation and tick layout are most of matplotlib's time here.
    """

    def __init__(self, num_panels: int, max_cols: int = 6) -> None:
        plt = pyplot()
        cols = max(1, min(max_cols, num_panels))
        blocks = math.ceil(num_panels / cols)
        self.fig = plt.figure(figsize=(cols * PANEL_IN, blocks * 3 * PANEL_IN * 0.85 + 0.6))
        height = self.fig.get_figheight()
        grid = self.fig.add_gridspec(3 * blocks, cols, left=0.06, right=0.98, bottom=0.55 / height,
                                     top=1 - 0.95 / height, wspace=0.45, hspace=0.75)
        self.axes = [tuple(self.fig.add_subplot(grid[3 * (i // cols) + k, i % cols]) for k in range(3))
                     for i in range(num_panels)]
        for _, curve_ax, hist_ax in self.axes:
            curve_ax.tick_params(labelsize=6)
            hist_ax.tick_params(labelsize=6)

    def draw(self, original: Panel, variants: Sequence[Panel], path: Path, suptitle: str = "") -> Path:
        """Write one image's figure to ``path`` (PNG, atomically)."""
        panels = [original, *variants]
        if len(panels) != len(self.axes):
            raise ValueError(f"this figure has {len(self.axes)} panels, got {len(panels)}")
        before = _luma_hist(original.image)
        for index, (panel, (image_ax, curve_ax, hist_ax)) in enumerate(zip(panels, self.axes)):
            for ax in (image_ax, curve_ax, hist_ax):
                _clear(ax)
            _show(image_ax, panel.image, panel.title, fontsize=7)
            _draw_curve(curve_ax, panel.curve)
            _draw_histogram(hist_ax, before, _luma_hist(panel.image), legend=index == 0)
        self.fig.suptitle(suptitle, fontsize=10)
        with atomic_path(path) as tmp:
            self.fig.savefig(tmp, format="png", dpi=DPI)
        return path

    def close(self) -> None:
        pyplot().close(self.fig)


def summary_chart(labels: Sequence[str], rescued: Sequence[int], broken: Sequence[int], path: Path,
                  title: str = "") -> Path:
    """Horizontal bars per transform: images rescued (right, green) and broken (left, red), net gain marked."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    count = max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.35 * count))
    rows = np.arange(len(labels))
    ax.barh(rows, rescued, color="tab:green", label="rescued (wrong -> right)")
    ax.barh(rows, [-b for b in broken], color="tab:red", label="broken (right -> wrong)")
    net = np.asarray(rescued) - np.asarray(broken)
    ax.scatter(net, rows, color="black", marker="|", s=120, zorder=3, label="net gain")
    ax.axvline(0, color="0.3", lw=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not any(rescued) and not any(broken):
        ax.set_xlim(-1, 1)
    ax.set_yticks(rows, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("images")
    ax.set_title(title or "What each enhancement does to the predictions", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.5 / count ** 0.5 - 0.1), ncol=3)
    fig.tight_layout()
    return _save(fig, path)
