"""``imgclf enhance``: which intensity enhancements rescue mistakes, and which break correct images."""

from __future__ import annotations

import csv
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgclf.analysis.enhance import (SUMMARY_COLUMNS, VariantScore, apply_enhancement, luma, pick_figures,
                                     predict_variants, score_variants, transfer_curves)
from imgclf.analysis.enhancements import Variant
from imgclf.config.enhancements import plan_variants
from imgclf.analysis.figures import EnhancementFigures, Panel, summary_chart
from imgclf.analysis.mistakes import safe_name
from imgclf.artifacts import FOLDER_SPLIT, EvaluationDir, RunDir
from imgclf.commands.mistakes import clear_folder
from imgclf.config import EnhanceConfig
from imgclf.config.run import SPLITS
from imgclf.console import print_table, status, warn
from imgclf.data.folders import labels_from_folders
from imgclf.engine.inference import LoadedModel, load_image_files, load_run_model, load_split, predict_probs
from imgclf.errors import ImgclfError
from imgclf.io import write_csv

FIGURE_REASONS = {"rescued": "a mistake an enhancement rescues", "broken": "a correct image an enhancement breaks",
                  "mistake": "a mistake no enhancement rescues", "correct": "correct under every enhancement",
                  "changed": "an enhancement changes the prediction", "other": "no enhancement changes the prediction"}


@dataclass
class EnhanceResult:
    num_images: int
    num_variants: int
    scores: list[VariantScore]
    exit_code: int = 0


def _read_mistakes(folder: EvaluationDir, loaded: LoadedModel, mistakes_command: str
                   ) -> tuple[list[Path], np.ndarray, torch.Tensor]:
    if not folder.mistakes_csv.is_file():
        raise ImgclfError(f"{folder.mistakes_csv} not found: collect the mistakes first with: {mistakes_command} "
                          f"(or pass --on val, or a folder of images)")
    with open(folder.mistakes_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ImgclfError(f"{folder.mistakes_csv} lists no mistakes, so there is nothing to rescue; "
                          f"test the enhancements on all images instead with --on val")
    label_of = {str(Path(row["path"])): loaded.classes.index(row["true"]) if row["true"] in loaded.classes else -1
                for row in rows}
    paths, images, errors = load_image_files(loaded, [Path(row["path"]) for row in rows])
    for path, reason in errors:
        warn(f"{path}: {reason}; skipped")
    return paths, np.array([label_of[str(p)] for p in paths], dtype=np.int64), images


@dataclass(frozen=True)
class Target:
    """What enhance tests: the mistakes of an evaluation, all of a split, or a folder of images."""

    kind: str                 # "mistakes", "split" or "folder"
    data: Path | None         # the data folder (None = the run's own) or the folder of images
    split: str

    @property
    def label(self) -> str:
        return {"mistakes": f"mistakes on {self.split}", "split": self.split}.get(self.kind, str(self.data))


def resolve_target(cfg: EnhanceConfig) -> Target:
    """IMAGES, or --on mistakes / a split name / a folder, with --data and --split."""
    if cfg.images is not None:
        return Target("folder", cfg.images, FOLDER_SPLIT)
    if cfg.on == "mistakes":
        return Target("mistakes", cfg.data, cfg.split or "val")
    if cfg.on in SPLITS and not Path(cfg.on).exists():
        return Target("split", cfg.data, cfg.on)
    if not Path(cfg.on).exists():
        raise ImgclfError(f"--on {cfg.on}: not mistakes, {', '.join(SPLITS)} or an existing folder")
    return Target("folder", Path(cfg.on), FOLDER_SPLIT)


def load_images_to_test(folder: EvaluationDir, loaded: LoadedModel, target: Target, mistakes_command: str
                        ) -> tuple[list[Path], np.ndarray, torch.Tensor]:
    """(paths, targets with -1 for unknown, uint8 images) of the mistakes, a split, or a folder."""
    if target.kind == "mistakes":
        return _read_mistakes(folder, loaded, mistakes_command)
    if target.kind == "split":
        paths, targets, images = load_split(loaded, target.data, target.split)
        return paths, targets.numpy(), images
    assert target.data is not None
    paths, images, errors = load_image_files(loaded, [target.data])
    for path, reason in errors:
        warn(f"{path}: {reason}; skipped")
    return paths, np.array(labels_from_folders(paths, loaded.classes), dtype=np.int64), images


def _write_per_image(folder: EvaluationDir, paths: list[Path], targets: np.ndarray, all_probs: np.ndarray,
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
    write_csv(folder.enhance_per_image_csv, ["path", "true", "transform", "params", "predicted",
                                          *(f"prob_{c}" for c in classes), "correct"], rows)


def _figure_title(label: str, probs: np.ndarray, target: int, classes: list[str]) -> str:
    pred = int(probs.argmax())
    mark = "" if target < 0 else (" right" if pred == target else " wrong")
    return f"{label}\n{classes[pred]} {probs[pred]:.2f}{mark}"


def _write_figures(folder: EvaluationDir, cfg: EnhanceConfig, paths: list[Path], targets: np.ndarray, images: torch.Tensor,
                   all_probs: np.ndarray, variants: list[Variant], classes: list[str]) -> None:
    picks = pick_figures(targets, all_probs, cfg.figures)
    count = len(picks)
    chosen = torch.tensor([p.index for p in picks], dtype=torch.long)
    originals = images[chosen]
    enhanced = [apply_enhancement(originals, v.name, v.params, cfg.color) for v in variants]
    per_channel = cfg.color == "channels" and images.shape[1] == 3
    figures = EnhancementFigures(1 + len(variants)) if count else None
    for n, pick in enumerate(picks):
        i = pick.index
        planes = originals[n].numpy() if per_channel else luma(originals[n:n + 1])
        curves = [transfer_curves(planes, v.name, v.params) for v in variants]
        original = Panel(originals[n], np.arange(256), _figure_title("original", all_probs[0, i], targets[i], classes))
        panels = [Panel(enhanced[v][n], curves[v] if per_channel else curves[v][0],
                        _figure_title(variant.label, all_probs[v + 1, i], targets[i], classes))
                  for v, variant in enumerate(variants)]
        truth = f" (true: {classes[targets[i]]})" if targets[i] >= 0 else ""
        path = folder.enhance_figures_dir / f"{n + 1:03d}_{pick.reason}_{safe_name(paths[i].stem)[:80]}.png"
        figures.draw(original, panels, path, suptitle=f"{paths[i].name}{truth}: {FIGURE_REASONS[pick.reason]}")
    if figures is not None:
        figures.close()


def run(cfg: EnhanceConfig) -> EnhanceResult:
    variants = plan_variants(cfg.transforms, cfg.set)
    run_dir = RunDir(Path(cfg.run))
    loaded = load_run_model(run_dir.root, cfg.checkpoint, cfg.device, cfg.precision,
                            trust_model_code=cfg.trust_model_code, backend=cfg.backend)
    target = resolve_target(cfg)
    folder = run_dir.evaluation_dir(target.data, target.split, cfg.checkpoint)
    paths, targets, images = load_images_to_test(folder, loaded, target, _mistakes_command(cfg, target))
    if not paths:
        raise ImgclfError(f"no images to enhance in {target.label}")
    status(f"re-predicting {len(paths)} images x {1 + len(variants)} versions")
    all_probs = predict_variants(images, variants, lambda b: predict_probs(loaded, b, cfg.batch_size).numpy(),
                                 cfg.color)
    scores = score_variants(targets, all_probs, variants)
    clear_folder(run_dir, folder.enhance_dir)
    write_csv(folder.enhance_summary_csv, SUMMARY_COLUMNS, [s.row() for s in scores])
    _write_per_image(folder, paths, targets, all_probs, variants, loaded.classes)
    summary_chart([s.transform + (f" {s.params}" if s.params else "") for s in scores[1:]],
                  [s.rescued for s in scores[1:]], [s.broken for s in scores[1:]],
                  folder.enhance_summary_csv.with_suffix(".png"),
                  title=f"Enhancements on {len(paths)} images ({target.label}): rescued vs broken")
    _write_figures(folder, cfg, paths, targets, images, all_probs, variants, loaded.classes)
    print_table(["transform", "params", "accuracy", "rescued", "broken", "net_gain", "mean_delta_true_prob"],
                [[s.transform, s.params, "" if s.accuracy is None else s.accuracy, s.rescued, s.broken,
                  s.net_gain, "" if s.mean_delta_true_prob is None else s.mean_delta_true_prob] for s in scores])
    status(f"wrote {folder.enhance_summary_csv}, {folder.enhance_per_image_csv.name} and "
           f"{min(cfg.figures, len(paths))} figures (rescued first, then broken, then the worst mistakes) in "
           f"{folder.enhance_figures_dir}")
    return EnhanceResult(len(paths), len(variants), scores)


def _mistakes_command(cfg: EnhanceConfig, target: Target) -> str:
    """The ``imgclf mistakes`` line that writes the mistakes.csv this enhance run reads."""
    parts = ["imgclf mistakes", shlex.quote(str(cfg.run))]
    if target.data is not None:
        parts.append(shlex.quote(str(target.data)))
    if target.split != "val":
        parts += ["--split", shlex.quote(target.split)]
    if cfg.checkpoint != "best":
        parts += ["--checkpoint", cfg.checkpoint]
    return " ".join(parts)
