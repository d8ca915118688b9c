"""``imgclf label-issues``: K-fold out-of-sample probabilities for a split, then confident learning."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf.analysis.figures import gallery
from imgclf.analysis.label_issues import RULE, LabelIssues, find_label_issues
from imgclf.artifacts import LabelIssueFiles, RunDir, new_run_dir
from imgclf.commands.mistakes import clear_folder
from imgclf.config import LabelIssuesConfig, TrainConfig, command_line
from imgclf.console import print_table, status, warn
from imgclf.data.folders import list_split
from imgclf.data.loading import auto_img_size, load_images
from imgclf.data.multilabel import resolve_multi_label
from imgclf.data.transforms import channel_stats
from imgclf.engine.runtime import resolve_device
from imgclf.errors import ImgclfError
from imgclf.io import read_json, write_csv, write_json
from imgclf.models.registry import check_trusted
from imgclf.training import recipe as rules
from imgclf.training.fit import steps_per_epoch
from imgclf.training.folds import FoldResult, FoldTraining, assign_folds, available_cores, out_of_fold_probs

TABLE_ROWS = 10


@dataclass
class LabelIssuesResult:
    num_images: int
    num_flagged: int
    folder: Path
    flagged: list[str]          # paths of the flagged images, most likely error first
    exit_code: int = 0


@dataclass(frozen=True)
class Plan:
    """Where the data and the results are, and the fold models' model / size / channels."""

    data: Path
    files: LabelIssueFiles
    run: RunDir | None
    model: str
    img_size: int               # 0 = from the data
    channels: int


def plan(cfg: LabelIssuesConfig) -> Plan:
    """Resolve --run (its data, model, size, channels as defaults) or --out."""
    defaults: dict[str, Any] = {"model": "auto", "img_size": 0, "channels": 3}
    run = RunDir(cfg.run) if cfg.run is not None else None
    data = cfg.data
    if run is not None:
        run.require_trained()
        if data is not None and not run.is_own_data(data):
            raise ImgclfError(f"DATA {data} is not the data {run.root} was trained on; drop --run and pass --out, "
                              "or drop DATA")
        data = data or run.own_data()
        saved = read_json(run.config_json)
        derived = saved.get("derived", {})
        model = derived.get("recipe", {}).get("model") or saved.get("model", "resnet18")
        defaults = {"model": model, "img_size": int(derived.get("img_size", 0)),
                    "channels": int(derived.get("channels", 3))}
        if not cfg.model:   # a model the run's config names, not one typed here: its code needs consent
            check_trusted(defaults["model"], cfg.trust_model_code, str(run.config_json))
    if data is None:
        raise ImgclfError(f"{cfg.run}: config.json does not name the run's data folder; pass DATA")
    channels = {"rgb": 3, "gray": 1}.get(cfg.channels, defaults["channels"])
    files = run.label_issues(cfg.split) if run is not None else LabelIssueFiles(_out_folder(cfg))
    return Plan(Path(data), files, run, cfg.model or defaults["model"], cfg.img_size or defaults["img_size"],
                channels)


def _out_folder(cfg: LabelIssuesConfig) -> Path:
    if cfg.out is None:
        return new_run_dir(Path("runs"), "label-issues")
    if cfg.out.exists() and any(cfg.out.iterdir()) and not cfg.force:
        raise ImgclfError(f"{cfg.out} exists and is not empty; choose a new --out or pass --force")
    cfg.out.mkdir(parents=True, exist_ok=True)
    return cfg.out


def fold_model(model: str, img_size: int, num_train: int) -> str:
    """``auto``: the model ``imgclf train --model auto`` would pick for one fold's training images."""
    return rules.choose_model(img_size, num_train) if model == "auto" else model


def fold_training(cfg: LabelIssuesConfig, p: Plan, num_classes: int, num_images: int, img_size: int,
                  mean: list[float], std: list[float]) -> FoldTraining:
    """The fold models train as ``imgclf train`` does by default, with the few settings given here."""
    base = TrainConfig()
    num_train = (cfg.folds - 1) * num_images // cfg.folds
    steps = steps_per_epoch(num_train, cfg.batch_size) * cfg.epochs
    return FoldTraining(
        model=fold_model(p.model, img_size, num_train), num_classes=num_classes, epochs=cfg.epochs,
        batch_size=cfg.batch_size, lr=cfg.lr, momentum=base.momentum, nesterov=base.nesterov,
        weight_decay=base.weight_decay, label_smoothing=base.label_smoothing,
        warmup_steps=rules.recipe_warmup_steps(steps),
        crop_padding=img_size // 8 if base.crop_padding < 0 else base.crop_padding, hflip=base.hflip,
        mean=tuple(mean), std=tuple(std), seed=cfg.seed, device=cfg.device, precision=cfg.precision)


CORES_PER_JOB = 4   # measured: on 2 cores one process with 2 threads beat 2 single-thread processes


def resolve_jobs(jobs: int, folds: int, device: str) -> int:
    """--jobs 0: one process on a GPU; on the CPU one fold per 4 cores at a time, up to K."""
    if jobs:
        return min(jobs, folds)
    if resolve_device(device).type == "cuda":
        return 1
    return max(1, min(folds, available_cores() // CORES_PER_JOB))


def load_split_images(p: Plan, split: str) -> tuple[list[Path], np.ndarray, list[str], torch.Tensor, int]:
    """(paths, targets, classes, uint8 images (N, C, S, S), S) of the split; unreadable files are skipped."""
    if resolve_multi_label(p.data, False):
        raise ImgclfError(f"{p.data}: multi-label data; label-issues works on single-label class folders")
    paths, targets, classes = list_split(p.data, split)
    img_size = p.img_size or auto_img_size(paths)
    if not p.img_size and p.model == "auto":
        img_size = rules.recipe_img_size(img_size, len(paths))   # as ``imgclf train`` sizes them with --model auto
    images, ok, errors = load_images(paths, img_size, p.channels, desc=f"decoding {split}")
    for path, reason in errors:
        warn(f"{path}: {reason}; skipped")
    return [paths[i] for i in ok], np.asarray(targets)[ok], classes, images, img_size


def run(cfg: LabelIssuesConfig) -> LabelIssuesResult:
    started = time.perf_counter()
    p = plan(cfg)
    paths, targets, classes, images, img_size = load_split_images(p, cfg.split)
    if len(paths) < 2 * cfg.folds:
        raise ImgclfError(f"{p.data}/{cfg.split}: {len(paths)} images are too few for {cfg.folds} folds; "
                          f"lower --folds")
    mean, std = channel_stats(images)
    spec = fold_training(cfg, p, len(classes), len(paths), img_size, mean, std)
    folds = assign_folds(targets, cfg.folds, cfg.seed)
    jobs = resolve_jobs(cfg.jobs, cfg.folds, cfg.device)
    status(f"training {cfg.folds} {spec.model} models on {cfg.folds - 1}/{cfg.folds} of {len(paths)} {cfg.split} "
           f"images each ({len(classes)} classes, {img_size}px, {cfg.epochs} epochs), {jobs} at a time")

    def report_fold(result: FoldResult) -> None:
        status(f"fold {result.fold + 1}/{cfg.folds}: accuracy {result.accuracy:.4f} on its {len(result.holdout)} "
               f"held-out images ({result.elapsed_s:.0f} s)")

    probs, results = out_of_fold_probs(spec, images, torch.from_numpy(targets).long(), folds, jobs, report_fold)
    issues = find_label_issues(targets, probs)
    if p.run is not None:
        clear_folder(p.run, p.files.root)
    write_results(p.files, paths, targets, classes, probs, folds, issues)
    _gallery(p.files, cfg.gallery, images, issues, probs, targets, classes)
    summary = _summary(cfg, p, spec, classes, img_size, jobs, results, probs, targets, issues,
                       time.perf_counter() - started)
    write_json(p.files.summary_json, summary)
    _print_summary(paths, targets, classes, probs, issues)
    status(f"{int(issues.flags.sum())} of {len(paths)} {cfg.split} images flagged as likely label errors "
           f"(out-of-fold accuracy {summary['out_of_fold_accuracy']:.4f}); {p.files.issues_csv.name} and "
           f"{p.files.gallery_png.name} in {p.files.root}")
    return LabelIssuesResult(len(paths), int(issues.flags.sum()), p.files.root, [str(paths[i]) for i in issues.order])


def write_results(files: LabelIssueFiles, paths: list[Path], targets: np.ndarray, classes: list[str],
                  probs: np.ndarray, folds: np.ndarray, issues: LabelIssues) -> None:
    """out_of_fold.csv (every image) and label_issues.csv (the flagged ones, most likely error first)."""
    preds = probs.argmax(axis=1)
    write_csv(files.out_of_fold_csv, ["path", "given", "predicted", "fold", *(f"prob_{c}" for c in classes),
                                      "self_confidence", "label_issue"],
              [[str(path), classes[targets[i]], classes[preds[i]], int(folds[i]), *(f"{v:.6f}" for v in probs[i]),
                f"{issues.self_confidence[i]:.6f}", int(issues.flags[i])] for i, path in enumerate(paths)])
    write_csv(files.issues_csv, ["rank", "path", "given", "suggested", "self_confidence", "suggested_prob",
                                 "margin", "fold"],
              [[rank, str(paths[i]), classes[targets[i]], classes[issues.suggested[i]],
                f"{issues.self_confidence[i]:.6f}", f"{probs[i, issues.suggested[i]]:.6f}",
                f"{issues.margin[i]:.6f}", int(folds[i])] for rank, i in enumerate(issues.order, start=1)])


def _gallery(files: LabelIssueFiles, count: int, images: torch.Tensor, issues: LabelIssues, probs: np.ndarray,
             targets: np.ndarray, classes: list[str]) -> None:
    shown = issues.order[:count]
    gallery([images[i] for i in shown],
            [f"labelled {classes[targets[i]]} ({probs[i, targets[i]]:.2f})\nlooks {classes[issues.suggested[i]]} "
             f"({probs[i, issues.suggested[i]]:.2f})" for i in shown],
            files.gallery_png, max_items=max(count, 1),
            suptitle=f"{len(issues.order)} likely label errors (out-of-fold; lowest self-confidence first)")


def _summary(cfg: LabelIssuesConfig, p: Plan, spec: FoldTraining, classes: list[str], img_size: int, jobs: int,
             results: list[FoldResult], probs: np.ndarray, targets: np.ndarray, issues: LabelIssues,
             elapsed_s: float) -> dict[str, Any]:
    return {
        "data": str(p.data.resolve()), "split": cfg.split, "num_images": int(len(targets)), "classes": classes,
        "rule": RULE, "num_flagged": int(issues.flags.sum()), "folds": cfg.folds, "jobs": jobs, "model": spec.model,
        "img_size": img_size, "channels": p.channels, "epochs": cfg.epochs, "seed": cfg.seed,
        "fold_accuracy": [round(r.accuracy, 6) for r in results],
        "out_of_fold_accuracy": round(float(np.mean(probs.argmax(axis=1) == targets)), 6),
        "thresholds": {c: round(float(t), 6) for c, t in zip(classes, issues.thresholds)},
        "confident_joint": {"rows": "given label", "columns": "confident class",
                            "counts": issues.confident_joint.tolist()},
        "elapsed_s": round(elapsed_s, 2), "command": command_line("imgclf label-issues", cfg)}


def _print_summary(paths: list[Path], targets: np.ndarray, classes: list[str], probs: np.ndarray,
                   issues: LabelIssues) -> None:
    rows = [[rank, classes[targets[i]], round(float(issues.self_confidence[i]), 4), classes[issues.suggested[i]],
             round(float(probs[i, issues.suggested[i]]), 4), paths[i].name]
            for rank, i in enumerate(issues.order[:TABLE_ROWS], start=1)]
    print_table(["rank", "given", "p_given", "suggested", "p_suggested", "file"], rows)
