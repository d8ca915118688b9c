"""``imgclf mistakes``: copy every misclassified image out, rank them, flag likely label errors."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgclf.analysis.figures import gallery
from imgclf.analysis.heatmaps import heatmap_gallery, write_heatmaps
from imgclf.analysis.metrics import per_sample_loss, predictions
from imgclf.analysis.label_issues import find_label_issues
from imgclf.analysis.mistakes import copy_name, margins, rank_mistakes, safe_name
from imgclf.artifacts import EvaluationDir, RunDir
from imgclf.config import MistakesConfig
from imgclf.console import print_table, status
from imgclf.analysis.multilabel import multilabel_mistake_rows, multilabel_mistakes
from imgclf.engine.inference import (LoadedModel, load_cam_setup, load_multilabel_split, load_run_model, load_split,
                                    predict_probs)
from imgclf.errors import ImgclfError
from imgclf.io import atomic_path, write_csv

TABLE_ROWS = 10


@dataclass
class MistakesResult:
    num_images: int
    num_mistakes: int
    num_label_issues: int
    csv: Path
    exit_code: int = 0


def clear_folder(run: RunDir, folder: Path) -> None:
    """Delete a folder the run owns (mistakes/, enhance/) so no stale file survives; never outside the run."""
    if folder.is_symlink() or not folder.resolve().is_relative_to(run.root.resolve()):
        raise ImgclfError(f"{folder}: not a folder inside the run; refusing to clear it")
    if folder.exists():
        shutil.rmtree(folder)


def copy_file(source: Path, destination: Path) -> None:
    """Copy (never move) a user's image, atomically."""
    with atomic_path(destination) as tmp:
        shutil.copyfile(source, tmp)


def _copy_mistakes(run: RunDir, folder: EvaluationDir, order: np.ndarray, paths: list[Path], targets: np.ndarray,
                   probs: np.ndarray, classes: list[str]) -> list[str]:
    """Copy each ranked mistake to mistakes/<true>/<predicted>/<readable name>; returns the copies (run-relative)."""
    preds = predictions(probs)
    copies = []
    for rank, index in enumerate(order, start=1):
        true, pred = classes[targets[index]], classes[preds[index]]
        name = copy_name(rank, paths[index], probs[index, targets[index]], pred, probs[index, preds[index]])
        destination = folder.mistakes_dir / safe_name(true) / safe_name(pred) / name
        copy_file(paths[index], destination)
        copies.append(run.relative(destination))
    return copies


def _write_csv(folder: EvaluationDir, order: np.ndarray, copies: list[str], paths: list[Path], targets: np.ndarray,
               probs: np.ndarray, classes: list[str], label_issue: np.ndarray, cams: list[tuple[str, str]]) -> None:
    """mistakes.csv; ``cams`` are the run-relative Grad-CAM overlays (predicted, true) of the first mistakes."""
    losses, gaps, preds = per_sample_loss(targets, probs), margins(targets, probs), predictions(probs)
    self_confidence = probs[np.arange(len(targets)), targets]
    header = ["rank", "path", "copy", "true", "predicted", *(f"prob_{c}" for c in classes), "loss", "margin",
              "label_issue", "self_confidence", "heatmap_predicted", "heatmap_true"]
    rows = [[rank, str(paths[i]), copy, classes[targets[i]], classes[preds[i]],
             *(f"{p:.6f}" for p in probs[i]), f"{losses[i]:.6f}", f"{gaps[i]:.6f}", int(label_issue[i]),
             f"{self_confidence[i]:.6f}", *(cams[rank - 1] if rank <= len(cams) else ("", ""))]
            for rank, (i, copy) in enumerate(zip(order, copies), start=1)]
    write_csv(folder.mistakes_csv, header, rows)


def _heatmaps(run: RunDir, folder: EvaluationDir, cfg: MistakesConfig, order: np.ndarray, images: torch.Tensor,
              targets: np.ndarray, probs: np.ndarray, classes: list[str]) -> list[tuple[str, str]]:
    """Grad-CAM overlays of the predicted and the true class of the ``--heatmaps`` worst mistakes, and their gallery.

    Returns the run-relative (predicted, true) overlay paths, in rank order.
    """
    shown = order[:cfg.heatmaps]
    if not len(shown):
        return []
    _, setup = load_cam_setup(run.root, cfg.checkpoint, cfg.device, cfg.layer, cfg.trust_model_code)
    preds = predictions(probs)
    picked = images[torch.as_tensor(shown)]
    heatmaps = write_heatmaps(setup, picked, preds[shown], targets[shown],
                              [f"{rank:04d}" for rank in range(1, len(shown) + 1)], folder.mistakes_heatmaps_dir,
                              min(cfg.batch_size, 32))
    titles = [(f"#{r} {classes[targets[i]]} -> {classes[preds[i]]}", f"looks {classes[preds[i]]} ({probs[i, preds[i]]:.2f})",
               f"looks {classes[targets[i]]} ({probs[i, targets[i]]:.2f})") for r, i in enumerate(shown, start=1)]
    if cfg.gallery:
        heatmap_gallery(picked, heatmaps, titles, folder.mistakes_heatmaps_png, cfg.gallery,
                        f"Grad-CAM ({setup.layer}) of the worst mistakes: image, predicted class, true class")
    return [(run.relative(h.pred_png), run.relative(h.true_png)) for h in heatmaps]


def _galleries(folder: EvaluationDir, cfg: MistakesConfig, order: np.ndarray, issues_order: np.ndarray,
               suggested: np.ndarray, images: torch.Tensor, targets: np.ndarray, probs: np.ndarray,
               classes: list[str]) -> None:
    preds = predictions(probs)
    shown = order[:cfg.gallery]
    gallery([images[i] for i in shown],
            [f"#{r} {classes[targets[i]]} -> {classes[preds[i]]} ({probs[i, preds[i]]:.2f})"
             for r, i in enumerate(shown, start=1)],
            folder.mistakes_gallery_png, max_items=cfg.gallery,
            suptitle=f"Worst {len(shown)} of {len(order)} mistakes on {cfg.split} (true -> predicted (p))")
    flagged = issues_order[:cfg.gallery]
    gallery([images[i] for i in flagged],
            [f"labelled {classes[targets[i]]} ({probs[i, targets[i]]:.2f})\nlooks {classes[suggested[i]]} "
             f"({probs[i, suggested[i]]:.2f})" for i in flagged],
            folder.label_errors_png, max_items=cfg.gallery,
            suptitle=f"{len(issues_order)} likely label errors (lowest self-confidence first)")


def run(cfg: MistakesConfig) -> MistakesResult:
    run_dir = RunDir(Path(cfg.run))
    loaded = load_run_model(run_dir.root, cfg.checkpoint, cfg.device, cfg.precision,
                            trust_model_code=cfg.trust_model_code, backend=cfg.backend)
    classes = loaded.classes
    folder = run_dir.evaluation_dir(cfg.data, cfg.split, cfg.checkpoint)
    if loaded.multi_label:
        return _run_multilabel(cfg, loaded, run_dir, folder)
    paths, targets_t, images = load_split(loaded, cfg.data, cfg.split)
    if not paths:
        raise ImgclfError(f"the {cfg.split} split has no images")
    probs = predict_probs(loaded, images, cfg.batch_size).numpy().astype(np.float64)  # (N, K)
    targets = targets_t.numpy()
    order = rank_mistakes(targets, probs)
    issues = find_label_issues(targets, probs)
    clear_folder(run_dir, folder.mistakes_dir)
    copies = _copy_mistakes(run_dir, folder, order, paths, targets, probs, classes)
    cams = _heatmaps(run_dir, folder, cfg, order, images, targets, probs, classes)
    _write_csv(folder, order, copies, paths, targets, probs, classes, issues.flags, cams)
    _galleries(folder, cfg, order, issues.order, issues.suggested, images, targets, probs, classes)
    _print_summary(order, paths, targets, probs, classes, issues.flags)
    status(f"{len(order)} of {len(paths)} {cfg.split} images misclassified, {len(issues.order)} likely label "
           f"errors; copies and {folder.mistakes_csv.name} in {folder.mistakes_dir}")
    return MistakesResult(len(paths), len(order), len(issues.order), folder.mistakes_csv)


def _print_summary(order: np.ndarray, paths: list[Path], targets: np.ndarray, probs: np.ndarray,
                   classes: list[str], label_issue: np.ndarray) -> None:
    preds, losses = predictions(probs), per_sample_loss(targets, probs)
    rows = [[rank, classes[targets[i]], classes[preds[i]], float(probs[i, preds[i]]), float(losses[i]),
             "yes" if label_issue[i] else "", paths[i].name]
            for rank, i in enumerate(order[:TABLE_ROWS], start=1)]
    print_table(["rank", "true", "predicted", "p_pred", "loss", "label_issue", "file"], rows)


def _run_multilabel(cfg: MistakesConfig, loaded: LoadedModel, run_dir: RunDir, folder: EvaluationDir
                    ) -> MistakesResult:
    """Images with any wrong label (missed or extra), copied to mistakes/multi-label/, ranked by loss."""
    paths, targets, images = load_multilabel_split(loaded, cfg.data, cfg.split)
    probs = predict_probs(loaded, images, cfg.batch_size).numpy().astype(np.float64)   # (N, K)
    clear_folder(run_dir, folder.mistakes_dir)
    wrong = multilabel_mistakes(targets, probs, loaded.classes, loaded.threshold)
    copies = []
    for rank, item in enumerate(wrong, start=1):
        source = paths[item.index]
        destination = folder.mistakes_dir / "multi-label" / f"{rank:04d}_{safe_name(source.stem)}{source.suffix}"
        copy_file(source, destination)
        copies.append(run_dir.relative(destination))
    header, rows = multilabel_mistake_rows(wrong, paths, copies, targets, probs, loaded.classes, loaded.threshold)
    write_csv(folder.mistakes_csv, header, rows)
    print_table(["rank", "missing", "extra", "loss", "file"],
                [[r[0], r[5] or "-", r[6] or "-", float(r[-1]), Path(r[1]).name] for r in rows[:TABLE_ROWS]])
    status(f"{len(wrong)} of {len(paths)} {cfg.split} images have a wrong label; copies and "
           f"{folder.mistakes_csv.name} in {folder.mistakes_dir}")
    return MistakesResult(len(paths), len(wrong), 0, folder.mistakes_csv)
