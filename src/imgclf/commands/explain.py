"""``imgclf explain``: Grad-CAM overlays for the predicted class and, where it is known, the true class.

The outputs go to ``explain/`` beside the matching evaluation: ``RunDir.evaluation_dir(DATA, split,
checkpoint)`` for a split, and the folder of the given IMAGES (keyed as split ``images``, as
``enhance IMAGES`` does) for files and folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgclf.analysis.heatmaps import Heatmap, heatmap_gallery, write_heatmaps
from imgclf.analysis.mistakes import safe_name, truncate_utf8
from imgclf.artifacts import FOLDER_SPLIT, EvaluationDir, RunDir
from imgclf.commands.mistakes import clear_folder
from imgclf.config import ExplainConfig
from imgclf.console import print_table, status, warn
from imgclf.data.folders import labels_from_folders
from imgclf.engine.inference import LoadedModel, load_cam_setup, load_image_files, load_split, predict_probs
from imgclf.errors import ImgclfError
from imgclf.io import write_csv, write_json

TABLE_ROWS = 10
DEFAULT_SPLIT = "val"
STEM_BYTES = 120


@dataclass
class ExplainResult:
    num_images: int
    layer: str
    csv: Path
    heatmaps: list[Heatmap]
    exit_code: int = 0


def output_folder(run: RunDir, cfg: ExplainConfig) -> EvaluationDir:
    """The evaluation folder explain/ goes into: the split's, or the given images' (their common folder)."""
    if not cfg.images:
        return run.evaluation_dir(cfg.data, cfg.split or DEFAULT_SPLIT, cfg.checkpoint)
    folders = [str(p.resolve() if p.is_dir() else p.resolve().parent) for p in cfg.images]
    return run.evaluation_dir(Path(os.path.commonpath(folders)), FOLDER_SPLIT, cfg.checkpoint)


def _inputs(cfg: ExplainConfig, loaded: LoadedModel) -> tuple[list[Path], np.ndarray, torch.Tensor, str]:
    """(paths, true classes (-1 = unknown), uint8 images, what they are) of the images to explain."""
    if cfg.images:
        paths, images, skipped = load_image_files(loaded, cfg.images)
        for path, reason in skipped:
            warn(f"{path}: {reason}; skipped")
        targets = np.array(labels_from_folders(paths, loaded.classes), dtype=np.int64)
        what = f"{len(paths)} given images"
    else:
        split = cfg.split or DEFAULT_SPLIT
        paths, targets_t, images = load_split(loaded, cfg.data, split)
        targets, what = targets_t.numpy(), f"the {split} split"
    if cfg.limit and len(paths) > cfg.limit:
        paths, targets, images = paths[:cfg.limit], targets[:cfg.limit], images[:cfg.limit]
        what += f" (the first {cfg.limit}; --limit 0 for all)"
    if not paths:
        raise ImgclfError("no image to explain")
    return paths, targets, images, what


def run(cfg: ExplainConfig) -> ExplainResult:
    loaded, setup = load_cam_setup(cfg.run, cfg.checkpoint, cfg.device, cfg.layer, cfg.trust_model_code)
    if loaded.multi_label:
        warn("multi-label run: each image is explained for its most probable label only")
    run_dir = loaded.run
    assert run_dir is not None
    folder = output_folder(run_dir, cfg)
    paths, targets, images, what = _inputs(cfg, loaded)
    probs = predict_probs(loaded, images, cfg.batch_size).numpy()                       # (N, K)
    preds = probs.argmax(1)
    if loaded.multi_label:
        targets = np.full(len(paths), -1)
    clear_folder(run_dir, folder.explain_dir)
    stems = [f"{n + 1:04d}_{truncate_utf8(safe_name(p.stem), STEM_BYTES)}" for n, p in enumerate(paths)]
    heatmaps = write_heatmaps(setup, images, preds, targets, stems, folder.explain_dir / "heatmaps", cfg.batch_size)
    _write_csv(run_dir, folder, paths, targets, probs, heatmaps, loaded.classes)
    write_json(folder.explain_json, {"layer": setup.layer, "checkpoint": cfg.checkpoint, "images": what,
                                      "num_images": len(paths), "method": "Grad-CAM", "step": loaded.meta.get("step")})
    classes = loaded.classes
    titles = [(f"{classes[t]}: {p.name}" if t >= 0 else p.name, f"pred {classes[q]} ({probs[n, q]:.2f})",
               f"true {classes[t]}" if t >= 0 else "")
              for n, (p, t, q) in enumerate(zip(paths, targets, preds))]
    if cfg.gallery:
        heatmap_gallery(images, heatmaps, titles, folder.explain_gallery_png, cfg.gallery,
                        f"Grad-CAM on {setup.layer}: image, predicted class, true class")
    _print_table(paths, targets, preds, probs, heatmaps, classes)
    status(f"Grad-CAM on layer {setup.layer!r} for {what}: overlays in {folder.explain_dir / 'heatmaps'}, "
           f"{folder.explain_csv.name}" + (f", {folder.explain_gallery_png.name}" if cfg.gallery else ""))
    return ExplainResult(len(paths), setup.layer, folder.explain_csv, heatmaps)


def _write_csv(run: RunDir, folder: EvaluationDir, paths: list[Path], targets: np.ndarray, probs: np.ndarray,
               heatmaps: list[Heatmap], classes: list[str]) -> None:
    """explain.csv: one row per image; overlay paths relative to the run folder (as mistakes.csv's copies)."""
    header = ["path", "true", "predicted", "p_predicted", "p_true", "heatmap_predicted", "heatmap_true",
              "peak_predicted_row", "peak_predicted_col", "peak_true_row", "peak_true_col"]
    rows = []
    for n, (path, target, heatmap) in enumerate(zip(paths, targets, heatmaps)):
        pred = int(probs[n].argmax())
        true_peak = heatmap.true_peak or ("", "")
        rows.append([str(path), classes[target] if target >= 0 else "", classes[pred], f"{probs[n, pred]:.6f}",
                     f"{probs[n, target]:.6f}" if target >= 0 else "", run.relative(heatmap.pred_png),
                     run.relative(heatmap.true_png), *heatmap.pred_peak, *true_peak])
    write_csv(folder.explain_csv, header, rows)


def _print_table(paths: list[Path], targets: np.ndarray, preds: np.ndarray, probs: np.ndarray,
                 heatmaps: list[Heatmap], classes: list[str]) -> None:
    rows = [[p.name, classes[t] if t >= 0 else "?", classes[q], float(probs[n, q]), f"{h.pred_peak[0]},{h.pred_peak[1]}"]
            for n, (p, t, q, h) in enumerate(zip(paths[:TABLE_ROWS], targets, preds, heatmaps))]
    print_table(["file", "true", "predicted", "p", "peak (row,col)"], rows)
