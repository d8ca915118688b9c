"""``imgclf export``: a deployable ONNX or TorchScript model and its JSON sidecar, parity-checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgclf.config import ExportConfig
from imgclf.console import print_table, status, warn
from imgclf.data.folders import list_images, list_split
from imgclf.deploy.backends import source_of
from imgclf.deploy.export_folder import INT8_MAX_DROP_POINTS, ExportReport, prepare_images, write_export
from imgclf.deploy.sidecar import is_export_dir
from imgclf.engine.inference import LoadedModel, decode_labelled, load_run_model
from imgclf.errors import ImgclfError


@dataclass
class ExportResult:
    folder: Path
    report: ExportReport
    exit_code: int = 0


def spread(count: int, total: int) -> np.ndarray:
    """``count`` evenly spaced indices of ``total`` (all of them when count is 0 or more than total)."""
    if count <= 0 or count >= total:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, count).round().astype(np.int64))


def split_images(loaded: LoadedModel, data: Path | None, split: str, count: int
                 ) -> tuple[torch.Tensor, np.ndarray | None]:
    """(uint8 images, class indices or None for multi-label) of ``count`` images spread over a split."""
    root = data or loaded.data_root
    if root is None or not (Path(root) / split).is_dir():
        raise ImgclfError(f"no {split} images to check the export with ({root}/{split} not found); pass --data DATA")
    if loaded.output == "multilabel":
        paths, labels = list_images(Path(root) / split), None
    else:
        paths, targets, _ = list_split(Path(root), split, loaded.classes)
        labels = np.asarray(targets)
    pick = spread(count, len(paths))
    if not len(pick):
        raise ImgclfError(f"{root}/{split} has no images to check the export with")
    images = decode_labelled(loaded, [paths[i] for i in pick], f"{root}/{split}")
    return images, None if labels is None else labels[pick]


def out_folder(cfg: ExportConfig, loaded: LoadedModel) -> Path:
    assert loaded.run is not None
    out = cfg.out or loaded.run.export_dir(cfg.format, cfg.checkpoint, cfg.int8)
    if out.exists() and not cfg.force:
        raise ImgclfError(f"{out} already exists; pass --force to replace it, or choose --out")
    if out.exists() and any(out.iterdir()) and not is_export_dir(out):
        raise ImgclfError(f"{out} is not empty and not an imgclf export folder; refusing to replace it")
    return out


def run(cfg: ExportConfig) -> ExportResult:
    loaded = load_run_model(cfg.run, cfg.checkpoint, device="cpu", precision="fp32",
                            trust_model_code=cfg.trust_model_code)
    out = out_folder(cfg, loaded)
    images, labels = split_images(loaded, cfg.data, "val", cfg.check_images)
    calibration = None
    if cfg.int8:
        train, _ = split_images(loaded, cfg.data, "train", cfg.calibration_images)
        calibration = prepare_images(loaded, train)
    status(f"exporting {loaded.meta['model']} ({cfg.checkpoint}) to {cfg.format}; "
           f"checking it on {len(images)} val images")
    report = write_export(loaded, cfg.format, out, prepare_images(loaded, images), source_of(loaded), replace=cfg.force,
                          int8_calibration=calibration, int8_labels=labels)
    rows = [["format", cfg.format + (" int8" if report.int8 else "")], ["exporter", report.exporter],
            ["model file size", f"{report.size_bytes / 1e6:.1f} MB"],
            ["parity images", report.parity.num_images],
            ["top-1 agreement with PyTorch", f"{report.parity.top1_agreement:.2%}"],
            ["max |p - p_torch|", f"{report.parity.max_abs_prob_diff:.2e}"]]
    if report.int8 and "val_accuracy_int8" in report.int8:
        rows += [["val accuracy fp32", f"{report.int8['val_accuracy_fp32']:.4f}"],
                 ["val accuracy int8", f"{report.int8['val_accuracy_int8']:.4f}"],
                 ["accuracy change", f"{0.0 - report.int8['accuracy_drop_points']:+.2f} points"]]
    print_table(["", "value"], rows)
    if report.int8 and not report.int8.get("within_limit", True):
        warn(f"THE INT8 MODEL'S VAL ACCURACY MOVES BY {-report.int8['accuracy_drop_points']:+.2f} POINTS (more than "
             f"{INT8_MAX_DROP_POINTS:g}); --backend auto will not use it; prefer the fp32 export "
             f"(imgclf export {cfg.run}), or calibrate on more images (--calibration-images)")
    print(f"export folder: {out}")
    return ExportResult(out, report)
