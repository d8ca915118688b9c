"""Figures for a run: training curves and the confusion matrix (matplotlib, Agg backend).

matplotlib is imported inside the functions so importing this module stays cheap.
Every function either writes a PNG atomically (``*_path`` / ``path`` arguments) or
returns the PNG bytes, so the HTML report can embed them without temp files.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclf.io import write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110
ANNOTATE_MAX_CLASSES = 20   # write the count in every cell up to this many classes
NORMALIZE_MODES = ("true", "pred", "all")


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """Render ``fig`` to PNG bytes and close it."""
    plt = pyplot()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():   # class names in scripts the font lacks draw as boxes; that is fine
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)
    return buf.getvalue()


# --------------------------------------------------------------------------- training curves

def _column(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """One metrics column as floats; blanks and junk become NaN (a gap in the line)."""
    values = []
    for row in rows:
        try:
            values.append(float(row.get(key, "")))
        except (TypeError, ValueError):
            values.append(math.nan)
    return np.asarray(values, dtype=float)


def _plot_series(ax: Any, steps: np.ndarray, values: np.ndarray, label: str, color: str) -> bool:
    """Plot the finite points of one series; returns whether there was anything to plot."""
    ok = np.isfinite(values) & np.isfinite(steps)
    if not ok.any():
        return False
    marker = "o" if ok.sum() <= 30 else None
    ax.plot(steps[ok], values[ok], label=label, color=color, marker=marker, markersize=3.5, linewidth=1.6)
    return True


def _add_epoch_axis(ax: Any, steps: np.ndarray, epochs: np.ndarray) -> None:
    """A secondary x axis on top that reads the step axis in epochs."""
    ok = np.isfinite(steps) & np.isfinite(epochs)
    xs, ys = steps[ok], epochs[ok]
    if len(xs) < 2 or np.any(np.diff(xs) <= 0) or np.any(np.diff(ys) < 0) or ys[-1] <= ys[0]:
        return
    top = ax.secondary_xaxis("top", functions=(lambda s: np.interp(s, xs, ys), lambda e: np.interp(e, ys, xs)))
    top.set_xlabel("epoch", fontsize=8, color="#555555")
    top.tick_params(labelsize=7, colors="#555555")


def _no_data(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} recorded", ha="center", va="center", transform=ax.transAxes, color="#777777")


def training_curves_figure(rows: Sequence[Mapping[str, Any]], best_step: float | None = None) -> Figure:
    """Three panels over optimizer steps: train/val loss, val accuracy (%), learning rate."""
    plt = pyplot()
    steps, epochs = _column(rows, "step"), _column(rows, "epoch")
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.9), constrained_layout=True)
    loss_ax, acc_ax, lr_ax = axes
    has_train = _plot_series(loss_ax, steps, _column(rows, "train_loss"), "train", "#1f77b4")
    has_val = _plot_series(loss_ax, steps, _column(rows, "val_loss"), "validation", "#d62728")
    loss_ax.set(title="Loss", xlabel="step (optimizer updates)", ylabel="loss (per image, mean)")
    if has_train or has_val:
        loss_ax.legend(frameon=False, fontsize=8)
    else:
        _no_data(loss_ax, "loss")
    if not _plot_series(acc_ax, steps, _column(rows, "val_acc") * 100.0, "validation", "#2ca02c"):
        _no_data(acc_ax, "accuracy")
    acc_ax.set(title="Validation accuracy", xlabel="step (optimizer updates)", ylabel="accuracy (%)")
    lrs = _column(rows, "lr")
    if _plot_series(lr_ax, steps, lrs, "lr", "#9467bd"):
        finite = lrs[np.isfinite(lrs) & (lrs > 0)]
        if len(finite) and finite.max() / finite.min() > 50:
            lr_ax.set_yscale("log")
    else:
        _no_data(lr_ax, "learning rate")
    lr_ax.set(title="Learning rate", xlabel="step (optimizer updates)", ylabel="learning rate (per step)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if best_step is not None and math.isfinite(best_step):
            ax.axvline(best_step, color="#888888", linestyle=":", linewidth=1)
        _add_epoch_axis(ax, steps, epochs)
    if best_step is not None and math.isfinite(best_step):
        acc_ax.annotate("best ", xy=(best_step, 0.97), xycoords=("data", "axes fraction"), fontsize=7,
                        color="#666666", ha="right", va="top")
    return fig


def render_training_curves(rows: Sequence[Mapping[str, Any]], best_step: float | None = None) -> bytes:
    """PNG bytes of :func:`training_curves_figure`."""
    return figure_png(training_curves_figure(rows, best_step))


# --------------------------------------------------------------------------- confusion matrix

def _normalize_mode(normalize: str | bool | None) -> str | None:
    if normalize is True:
        return "true"
    if normalize in (None, False, "none", ""):
        return None
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES} or None, got {normalize!r}")
    return str(normalize)


def _normalized(counts: np.ndarray, mode: str | None) -> np.ndarray:
    """Counts divided by row sums ('true'), column sums ('pred') or the total ('all')."""
    if mode is None:
        return counts.astype(float)
    if mode == "true":
        denom = counts.sum(axis=1, keepdims=True)
    elif mode == "pred":
        denom = counts.sum(axis=0, keepdims=True)
    else:
        denom = np.asarray(counts.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, counts / np.maximum(denom, 1), 0.0)


def _annotate_cells(ax: Any, counts: np.ndarray, values: np.ndarray, mode: str | None, norm: Any) -> None:
    n = counts.shape[0]
    size = 11 if n <= 4 else 9 if n <= 10 else 7 if n <= 15 else 6
    for i in range(n):
        for j in range(n):
            text = str(int(counts[i, j]))
            if mode is not None and n <= 6:
                text += f"\n{values[i, j]:.0%}"
            dark = norm(values[i, j]) > 0.55
            ax.text(j, i, text, ha="center", va="center", fontsize=size, color="white" if dark else "#222222")


def confusion_matrix_figure(matrix: Sequence[Sequence[int]] | np.ndarray, classes: Sequence[str],
                            normalize: str | bool | None = "true", title: str = "Confusion matrix") -> Figure:
    """Rows = true class, columns = predicted; colour by ``normalize``d value, cells show counts."""
    plt = pyplot()
    from matplotlib.colors import Normalize, PowerNorm

    counts = np.asarray(matrix, dtype=float).reshape(len(classes), len(classes))
    mode = _normalize_mode(normalize)
    values = _normalized(counts, mode)
    n = len(classes)
    side = float(min(13.0, max(4.2, 2.2 + 0.3 * n)))
    fig, ax = plt.subplots(figsize=(side + 1.2, side), constrained_layout=True)
    vmax = 1.0 if mode is not None else max(float(values.max()), 1.0)
    # with many classes a square-root colour scale keeps the small off-diagonal confusions visible
    norm = PowerNorm(0.5, vmin=0.0, vmax=vmax) if n > 10 else Normalize(vmin=0.0, vmax=vmax)
    image = ax.imshow(values, cmap="Blues", norm=norm, interpolation="nearest")
    label = {"true": "fraction of true class (recall)", "pred": "fraction of predicted class (precision)",
             "all": "fraction of all images", None: "images"}[mode]
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02).set_label(label)
    tick_size = 10 if n <= 10 else 8 if n <= 25 else 6.5 if n <= 60 else 5
    ticks = np.arange(n)
    ax.set_xticks(ticks, [str(c) for c in classes], rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center",
                  fontsize=tick_size, rotation_mode="anchor")
    ax.set_yticks(ticks, [str(c) for c in classes], fontsize=tick_size)
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"{title} ({int(counts.sum())} images)")
    if n <= ANNOTATE_MAX_CLASSES:
        _annotate_cells(ax, counts, values, mode, norm)
    return fig


def render_confusion_matrix(matrix: Sequence[Sequence[int]] | np.ndarray, classes: Sequence[str],
                            normalize: str | bool | None = "true") -> bytes:
    """PNG bytes of :func:`confusion_matrix_figure`."""
    return figure_png(confusion_matrix_figure(matrix, classes, normalize))


def plot_confusion_matrix(matrix: Sequence[Sequence[int]] | np.ndarray, classes: Sequence[str],
                          path: str | Path, normalize: str | bool | None = "true") -> Path:
    """Write the confusion matrix PNG to ``path`` atomically.

    ``matrix[i][j]`` counts images of true class ``i`` predicted as ``j``. ``normalize`` is
    ``"true"`` (rows, the default), ``"pred"`` (columns), ``"all"`` or ``None`` (raw counts);
    it sets the colour scale, while the cells always show the counts (up to 20 classes).
    """
    write_bytes(path, render_confusion_matrix(matrix, classes, normalize))
    return Path(path)


# --------------------------------------------------------------------------- ROC curve

def plot_roc_curve(fpr: np.ndarray, tpr: np.ndarray, auc_value: float, positive: str, path: str | Path) -> Path:
    """Write the ROC curve of a two-class evaluation (``positive``: the class whose probability is scored)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.4), constrained_layout=True)
    ax.plot(fpr, tpr, color="#2458a6", lw=2, label=f"AUC {auc_value:.3f}")
    ax.plot([0, 1], [0, 1], color="#9aa1ab", lw=1, ls="--", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate",
           ylabel=f"true positive rate (positive class: {positive})", title=f"ROC curve ({len(fpr) - 1} thresholds)")
    ax.legend(loc="lower right")
    write_bytes(path, figure_png(fig))


# --------------------------------------------------------------------------- reliability diagram

def reliability_figure(bins: Sequence[Mapping[str, Any]], ece: float | None = None,
                       title: str = "Reliability diagram") -> Figure:
    """Accuracy against mean confidence per bin (bars; the diagonal is perfect calibration), counts below.

    ``bins`` are the rows of :meth:`imgclf.analysis.calibration.ReliabilityBins.rows`.
    """
    plt = pyplot()
    lower = np.array([float(b.get("lower", 0.0)) for b in bins])
    upper = np.array([float(b.get("upper", 0.0)) for b in bins])
    counts = np.array([float(b.get("count", 0.0)) for b in bins])
    accuracy = np.array([float(b.get("accuracy", 0.0)) for b in bins])
    confidence = np.array([float(b.get("confidence", 0.0)) for b in bins])
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(5.2, 6.0), sharex=True, constrained_layout=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    width, used = upper - lower, counts > 0
    ax.bar(lower[used], accuracy[used], width=width[used], align="edge", color="#4c78a8", edgecolor="white",
           label="accuracy")
    gap_low, gap_high = np.minimum(accuracy, confidence), np.maximum(accuracy, confidence)
    ax.bar(lower[used], (gap_high - gap_low)[used], bottom=gap_low[used], width=width[used], align="edge",
           color="#e45756", alpha=0.35, edgecolor="#e45756", hatch="//", label="gap to confidence")
    ax.plot([0, 1], [0, 1], linestyle="--", color="#444444", linewidth=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy in bin",
           title=title + (f" (ECE {ece:.3f})" if ece is not None else ""))
    ax.legend(loc="upper left", fontsize=8)
    ax_n.bar(lower, counts, width=width, align="edge", color="#9d9d9d", edgecolor="white")
    ax_n.set(xlabel="confidence (top-label probability)", ylabel="images")
    return fig


def render_reliability_diagram(bins: Sequence[Mapping[str, Any]], ece: float | None = None) -> bytes:
    """PNG bytes of :func:`reliability_figure`."""
    return figure_png(reliability_figure(bins, ece))


def plot_reliability_diagram(bins: Sequence[Mapping[str, Any]], path: str | Path, ece: float | None = None) -> Path:
    """Write the reliability diagram PNG to ``path`` atomically."""
    write_bytes(path, render_reliability_diagram(bins, ece))
    return Path(path)


# --------------------------------------------------------------------------- learning-rate range test

def plot_lr_range(lrs: Sequence[float], losses: Sequence[float], curve: Sequence[float],
                  suggestions: Mapping[str, float], path: str | Path) -> Path:
    """Loss against lr (log scale): the raw losses, their centred average and the suggested lrs."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    ax.plot(lrs, losses, color="#c5cbd3", lw=1, label="loss of each step")
    ax.plot(lrs, curve, color="#2458a6", lw=2, label="smoothed")
    colors = ("#d62728", "#ff7f0e", "#2ca02c")
    for (name, lr), color in zip(suggestions.items(), colors):
        ax.axvline(lr, color=color, lw=1.2, ls="--", label=f"{name}: {lr:.3g}")
    top = np.nanpercentile(np.asarray(curve, dtype=float), 95) if len(curve) else 1.0
    low = float(np.nanmin(np.asarray(curve, dtype=float))) if len(curve) else 0.0
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title="learning-rate range test",
           ylim=(low - 0.05 * abs(top - low), top + 0.15 * abs(top - low)))
    ax.legend(loc="upper left", fontsize=8)
    write_bytes(path, figure_png(fig))
    return Path(path)
