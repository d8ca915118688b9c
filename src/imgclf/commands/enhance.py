"""``imgclf enhance``: which intensity enhancements rescue mistakes, and which break correct images."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgclf.analysis.enhance import (SUMMARY_COLUMNS, VariantScore, apply_enhancement, luma, predict_variants,
                                     score_variants, transfer_curves)
from imgclf.analysis.enhancements import Variant
from imgclf.config.enhancements import plan_variants
from imgclf.analysis.figures import EnhancementFigures, Panel, summary_chart
from imgclf.analysis.mistakes import safe_name
from imgclf.artifacts import RunDir
from imgclf.commands.mistakes import clear_folder
from imgclf.config import EnhanceConfig
from imgclf.console import print_table, status, warn
from imgclf.engine.inference import LoadedModel, load_image_files, load_run_model, load_split, predict_probs
from imgclf.errors import ImgclfError
from imgclf.io import write_csv

SPLITS = ("train", "val", "test")


@dataclass
class EnhanceResult:
    num_images: int
    num_variants: int
    scores: list[VariantScore]
    exit_code: int = 0


def _labels_from_folders(paths: list[Path], classes: list[str]) -> np.ndarray:
    """The class of each image from its parent folder's name; -1 where that is not a class."""
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index.get(p.parent.name, -1) for p in paths], dtype=np.int64)


def _read_mistakes(run: RunDir, loaded: LoadedModel) -> tuple[list[Path], np.ndarray, torch.Tensor]:
    if not run.mistakes_csv.is_file():
        raise ImgclfError(f"{run.mistakes_csv} not found: collect the mistakes first with: imgclf mistakes {run.root} "
                          f"(or pass --on val, or a folder of images)")
    with open(run.mistakes_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ImgclfError(f"{run.mistakes_csv} lists no mistakes, so there is nothing to rescue; "
                          f"test the enhancements on all images instead with --on val")
    label_of = {str(Path(row["path"])): loaded.classes.index(row["true"]) if row["true"] in loaded.classes else -1
                for row in rows}
    paths, images, errors = load_image_files(loaded, [Path(row["path"]) for row in rows])
    for path, reason in errors:
        warn(f"{path}: {reason}; skipped")
    return paths, np.array([label_of[str(p)] for p in paths], dtype=np.int64), images


def load_images_to_test(run: RunDir, loaded: LoadedModel, on: str) -> tuple[list[Path], np.ndarray, torch.Tensor]:
    """(paths, targets with -1 for unknown, uint8 images) of the mistakes, a split, or a folder."""
    if on == "mistakes":
        return _read_mistakes(run, loaded)
    if on in SPLITS and not Path(on).exists():
        paths, targets, images = load_split(loaded, None, on)
        return paths, targets.numpy(), images
    if not Path(on).exists():
        raise ImgclfError(f"--on {on}: not mistakes, {', '.join(SPLITS)} or an existing folder")
    paths, images, errors = load_image_files(loaded, [Path(on)])
    for path, reason in errors:
        warn(f"{path}: {reason}; skipped")
    return paths, _labels_from_folders(paths, loaded.classes), images


def _write_per_image(run: RunDir, paths: list[Path], targets: np.ndarray, all_probs: np.ndarray,
                     variants: list[Variant], classes: list[str]) -> None:
    names = [("original", "")] + [(v.name, v.params_text) for v in variants]
    preds = all_probs.argmax(axis=2)
    rows = []
    for n, path in enumerate(paths):
        true = classes[targets[n]] if targets[n] >= 0 else ""
        for v, (name, params) in enumerate(names):
            correct = "" if targets[n] < 0 else int(preds[v, n] == targets[n])
            rows.append([str(path), true, name, params, classes[preds[v, n]],
                         *(f"{p:.6f}" for p in all_probs[v, n]), correct])
    write_csv(run.enhance_per_image_csv, ["path", "true", "transform", "params", "predicted",
                                          *(f"prob_{c}" for c in classes), "correct"], rows)


def _figure_title(label: str, probs: np.ndarray, target: int, classes: list[str]) -> str:
    pred = int(probs.argmax())
    mark = "" if target < 0 else (" right" if pred == target else " wrong")
    return f"{label}\n{classes[pred]} {probs[pred]:.2f}{mark}"


def _write_figures(run: RunDir, cfg: EnhanceConfig, paths: list[Path], targets: np.ndarray, images: torch.Tensor,
                   all_probs: np.ndarray, variants: list[Variant], classes: list[str]) -> None:
    count = min(cfg.figures, len(paths))
    originals = images[:count]
    enhanced = [apply_enhancement(originals, v.name, v.params, cfg.color) for v in variants]
    per_channel = cfg.color == "channels" and images.shape[1] == 3
    figures = EnhancementFigures(1 + len(variants)) if count else None
    for n in range(count):
        planes = originals[n].numpy() if per_channel else luma(originals[n:n + 1])
        curves = [transfer_curves(planes, v.name, v.params) for v in variants]
        original = Panel(originals[n], np.arange(256), _figure_title("original", all_probs[0, n], targets[n], classes))
        panels = [Panel(enhanced[v][n], curves[v] if per_channel else curves[v][0],
                        _figure_title(variant.label, all_probs[v + 1, n], targets[n], classes))
                  for v, variant in enumerate(variants)]
        truth = f" (true: {classes[targets[n]]})" if targets[n] >= 0 else ""
        path = run.enhance_figures_dir / f"{n + 1:03d}_{safe_name(paths[n].stem)[:80]}.png"
        figures.draw(original, panels, path, suptitle=f"{paths[n].name}{truth}")
    if figures is not None:
        figures.close()


def run(cfg: EnhanceConfig) -> EnhanceResult:
    variants = plan_variants(cfg.transforms, cfg.set)
    run_dir = RunDir(Path(cfg.run))
    loaded = load_run_model(run_dir.root, cfg.checkpoint, cfg.device, cfg.precision,
                            trust_model_code=cfg.trust_model_code)
    source = str(cfg.images) if cfg.images is not None else cfg.on
    paths, targets, images = load_images_to_test(run_dir, loaded, source)
    if not paths:
        raise ImgclfError(f"no images to enhance in {source}")
    status(f"re-predicting {len(paths)} images x {1 + len(variants)} versions")
    all_probs = predict_variants(images, variants, lambda b: predict_probs(loaded, b, cfg.batch_size).numpy(),
                                 cfg.color)
    scores = score_variants(targets, all_probs, variants)
    clear_folder(run_dir, run_dir.enhance_dir)
    write_csv(run_dir.enhance_summary_csv, SUMMARY_COLUMNS, [s.row() for s in scores])
    _write_per_image(run_dir, paths, targets, all_probs, variants, loaded.classes)
    summary_chart([s.transform + (f" {s.params}" if s.params else "") for s in scores[1:]],
                  [s.rescued for s in scores[1:]], [s.broken for s in scores[1:]],
                  run_dir.enhance_summary_csv.with_suffix(".png"),
                  title=f"Enhancements on {len(paths)} images ({source}): rescued vs broken")
    _write_figures(run_dir, cfg, paths, targets, images, all_probs, variants, loaded.classes)
    print_table(["transform", "params", "accuracy", "rescued", "broken", "net_gain", "mean_delta_true_prob"],
                [[s.transform, s.params, "" if s.accuracy is None else s.accuracy, s.rescued, s.broken,
                  s.net_gain, "" if s.mean_delta_true_prob is None else s.mean_delta_true_prob] for s in scores])
    status(f"wrote {run_dir.enhance_summary_csv}, {run_dir.enhance_per_image_csv.name} and "
           f"{min(cfg.figures, len(paths))} figures in {run_dir.enhance_figures_dir}")
    return EnhanceResult(len(paths), len(variants), scores)
