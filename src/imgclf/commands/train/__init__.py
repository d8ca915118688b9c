"""``imgclf train``: data -> model -> fit -> run folder. Orchestration only."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from imgclf.artifacts import RunDir, new_run_dir
from imgclf.commands.train.setup import (Recipe, build_model, fit_settings, load_data, make_loss, make_optimizer,
                                         resolve_recipe, run_range_test, weights_meta, wrap_for_training)
from imgclf.config import TrainConfig, command_line, config_to_dict
from imgclf.config.fields import build_config, resumable_fields
from imgclf.config.train import weights_preset
from imgclf.analysis.enhance import make_preprocess
from imgclf.console import print_table, status, warn
from imgclf.data.multilabel import resolve_multi_label
from imgclf.data.training import TrainingData
from imgclf.data.transforms import normalization
from imgclf.engine.checkpoint import load_state
from imgclf.engine.distributed import (Dist, barrier, broadcast_object, init_distributed, launched_by_torchrun,
                                      shutdown)
from imgclf.engine.runtime import configure_threads, resolve_device, seed_everything
from imgclf.errors import ImgclfError
from imgclf.io import read_json, remove_stale_temps, single_writer, write_json
from imgclf.models.outputs import num_model_outputs
from imgclf.models.pretrained import fetch_torchvision_weights
from imgclf.models.registry import check_trusted, list_models
from imgclf.training.fit import FitState, Trainer, steps_per_epoch
from imgclf.training.logger import MetricsLogger
from imgclf.training.losses import resolve_output


@dataclass
class TrainResult:
    run_dir: Path | None
    final: dict[str, float]
    best: dict[str, float]
    exit_code: int = 0


def run(cfg: TrainConfig) -> TrainResult:
    if cfg.list_models:
        print("\n".join(list_models()))
        return TrainResult(None, {}, {})
    if cfg.nproc > 1 and not launched_by_torchrun():
        return launch(cfg)
    ctx = init_distributed(resolve_device(cfg.device).type)
    try:
        with contextlib.ExitStack() as locks:
            result = _train(cfg, ctx, locks)
        barrier(ctx)   # no rank tears its process group down while another still uses it
        return result
    finally:
        shutdown(ctx)


def _lock_run(locks: contextlib.ExitStack, root: Path, ctx: Dist) -> None:
    """One writer per run folder (rank 0 writes for all ranks): a second train on it stops."""
    if ctx.is_main:
        locks.enter_context(single_writer(RunDir(root).lock, str(root)))


def _train(cfg: TrainConfig, ctx: Dist, locks: contextlib.ExitStack) -> TrainResult:
    resume_state, saved_recipe = None, None
    if cfg.resume is not None:
        RunDir(cfg.resume).require_trained()
        _lock_run(locks, cfg.resume, ctx)
        cfg, resume_state, saved_recipe = _resumed_config(cfg, ctx)
    configure_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    seed_everything(cfg.seed, cfg.deterministic)
    if resume_state is None and cfg.weights != "none":   # fetch (or fail) before anything is written
        fetch_torchvision_weights(cfg.model, cfg.weights, cfg.offline)
    multi_label = resolve_multi_label(cfg.data, cfg.multi_label)
    preprocess = make_preprocess(cfg.preprocess)
    data = load_data(cfg, multi_label, pin=resolve_device(cfg.device).type == "cuda", preprocess=preprocess)
    if data.preprocessed:
        preprocess = None   # applied once to the decoded images, not every epoch
    mean, std = normalization(cfg.normalize, data.channels, data.mean, data.std)
    output = resolve_output(cfg.loss, multi_label, data.classes)
    recipe, runtime = resolve_recipe(saved_recipe.apply(cfg) if saved_recipe else cfg, data,
                                     num_model_outputs(output, len(data.classes)), ctx)
    run_cfg = recipe.apply(cfg)
    meta = weights_meta(run_cfg, data, mean, std, output)
    model = build_model(run_cfg, data, runtime, int(meta["num_outputs"]))
    settings = fit_settings(run_cfg, data, runtime, mean, std, meta, preprocess, ctx.world_size)
    if cfg.lr == "find" and resume_state is None:
        recipe = _found_lr(recipe, run_cfg, data, runtime, model, settings, ctx)
        run_cfg = recipe.apply(cfg)
        settings = fit_settings(run_cfg, data, runtime, mean, std, meta, preprocess, ctx.world_size)
    if ctx.is_main:
        for note in recipe.notes if resume_state is None else ():
            status(f"auto: {note}")
    root = cfg.resume if cfg.resume is not None else (_make_run_dir(run_cfg) if ctx.is_main else None)
    if cfg.resume is None and root is not None:
        _lock_run(locks, root, ctx)
    run_dir = RunDir(Path(broadcast_object(ctx, str(root))))
    if resume_state is None and ctx.is_main:
        _write_run_start(run_dir, cfg, recipe, data, meta, runtime.describe(), ctx.world_size)
    trainer = _make_trainer(run_cfg, model, data, runtime, run_dir, settings, resume_state, ctx)
    if ctx.is_main:
        ranks = f" x {ctx.world_size} processes" if ctx.enabled else ""
        status(f"training {run_cfg.model} on {data.train.num_images} images ({len(data.classes)} classes) at "
               f"{data.img_size}px, {runtime.describe()}{ranks}; run folder {run_dir.root}")
    try:
        state = trainer.fit(data.train, data.val)
    finally:
        if trainer.logger is not None:
            trainer.logger.close()
    if ctx.is_main:
        _write_summary(run_dir, run_cfg, data, state, trainer, runtime.describe(), ctx.world_size)
        print_table(["", "step", "epoch", "val_acc", "val_loss"],
                    [[name, int(r["step"]), float(r["epoch"]), float(r["val_acc"]), float(r["val_loss"])]
                     for name, r in (("final", state.last_eval), ("best", state.best))])
        print(f"run folder: {run_dir.root}")
    return TrainResult(run_dir.root, state.last_eval, state.best)


def _found_lr(recipe: Recipe, cfg: TrainConfig, data: TrainingData, runtime: Any, model: torch.nn.Module,
              settings: Any, ctx: Dist) -> Recipe:
    """``--lr find``: the range test's suggestion (rank 0's, so that every rank trains alike)."""
    if ctx.is_main:
        status("--lr find: learning-rate range test (100 steps on a copy of the model)")
    test = run_range_test(cfg, data, runtime, model, settings, ctx)
    lr = float(broadcast_object(ctx, test.valley))
    return dataclasses.replace(recipe, lr=lr, notes=recipe.notes + (
        f"lr {lr:.4g}: the range test's suggestion (steepest {test.steepest:.3g}, minimum/10 {test.minimum / 10:.3g})",))


def launch(cfg: TrainConfig) -> TrainResult:
    """``--nproc N``: start N processes of this same command through torchrun (single machine)."""
    if cfg.resume is not None:
        RunDir(cfg.resume).require_trained()
        check_world_size(RunDir(cfg.resume), load_state(RunDir(cfg.resume).resume_state), cfg.nproc)
    out = cfg.resume or _make_run_dir(cfg)
    child = dataclasses.replace(cfg, nproc=1, out=None if cfg.resume else out, force=cfg.force or not cfg.resume)
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.nproc}",
            "-m", "imgclf", *shlex.split(command_line("train", child))]
    status(f"launching {cfg.nproc} processes: torchrun --standalone --nproc_per_node={cfg.nproc} "
           f"-m imgclf {command_line('train', child)}")
    code = subprocess.run(argv, check=False).returncode
    if code != 0:
        raise ImgclfError(f"distributed training failed (exit code {code}); see the messages above")
    summary = read_json(RunDir(Path(out)).summary_json)
    return TrainResult(Path(out), summary.get("final", {}), summary.get("best", {}))


def _resumed_config(cfg: TrainConfig, ctx: Dist) -> tuple[TrainConfig, dict[str, Any], Recipe | None]:
    """The run's own config (and what its ``auto`` values resolved to), with the resumable overrides."""
    run = RunDir(Path(cfg.resume))  # type: ignore[arg-type]
    run.require_trained()
    removed = sum(map(remove_stale_temps, (run.root, run.checkpoints_dir))) if ctx.is_main else 0
    barrier(ctx)
    if removed:
        status(f"removed {removed} incomplete temp file(s) left by an interrupted save")
    config = read_json(run.config_json)
    derived = config.get("derived", {})
    saved = upgrade_saved_config({k: v for k, v in config.items() if k not in ("derived", "command")}, derived)
    recipe = Recipe(**{k: v for k, v in derived["recipe"].items() if k != "notes"}) if "recipe" in derived else None
    model = recipe.model if recipe else str(saved.get("model", ""))
    defaults, resumable = TrainConfig(), resumable_fields(TrainConfig)
    overrides = {k: getattr(cfg, k) for k in resumable if getattr(cfg, k) != getattr(defaults, k)}
    # consent to import model code comes from this command line, never from the run's files
    own = resumable + ("resume", "data", "force", "trust_model_code", "model")
    ignored = [f.name for f in dataclasses.fields(cfg) if f.name not in own
               and getattr(cfg, f.name) != getattr(defaults, f.name)]
    if ignored:
        warn(f"on --resume the run's own settings are used; ignored: {', '.join('--' + n.replace('_', '-') for n in ignored)}")
    if cfg.model != defaults.model and cfg.model != model:
        warn(f"on --resume the run's own model {model} is used; ignored: --model {cfg.model}")
    trusted = cfg.trust_model_code or cfg.model == model
    named = {model, str(saved.get("model", "auto"))} - {"auto", ""}   # every model the run's files name
    for name in sorted(named):
        check_trusted(name, trusted and name == model or cfg.trust_model_code, str(run.config_json),
                      f" (or --model {name})")
    saved.update(overrides, resume=str(run.root), force=True, nproc=1, trust_model_code=trusted)
    state = load_state(run.resume_state)
    check_world_size(run, state, ctx.world_size)
    return build_config(TrainConfig, saved), state, recipe


def upgrade_saved_config(saved: dict[str, Any], derived: dict[str, Any]) -> dict[str, Any]:
    """A config.json of an earlier version, in today's terms (0.1: warm-up in epochs, not steps); and
    ``--img-size auto`` as the size the run trained at, never re-derived (the rule may have changed)."""
    if not saved.get("img_size") and derived.get("img_size"):
        saved["img_size"] = int(derived["img_size"])
    if "warmup_epochs" in saved:
        epochs = float(saved.pop("warmup_epochs"))
        saved.setdefault("warmup_steps", round(epochs * int(derived.get("steps_per_epoch", 1))))
    return saved


def check_world_size(run: RunDir, state: dict[str, Any], world_size: int) -> None:
    saved_world = int(state.get("world_size", 1))
    if saved_world != world_size:
        raise ImgclfError(f"{run.root} was trained with {saved_world} process(es); resume it with "
                          f"--nproc {saved_world} (the step count per epoch depends on it)")


def _make_run_dir(cfg: TrainConfig) -> Path:
    if cfg.out is None:
        return new_run_dir(Path("runs"), cfg.model.split(":")[-1].split(".")[-1].split("/")[-1].lower())
    out = cfg.out
    if out.exists() and any(out.iterdir()) and not cfg.force:
        raise ImgclfError(f"{out} exists and is not empty; choose a new --out, continue it with "
                          f"--resume {out}, or pass --force")
    if cfg.data is not None and out.resolve().is_relative_to(cfg.data.resolve()):
        raise ImgclfError(f"--out {out} is inside the data folder {cfg.data}; put runs elsewhere")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_run_start(run: RunDir, cfg: TrainConfig, recipe: Recipe, data: TrainingData, meta: dict,
                     runtime: str, world_size: int) -> None:
    """config.json: the options as given (``auto`` included) and, under ``derived``, what they resolved to."""
    spe = steps_per_epoch(data.train.num_images, recipe.batch_size, world_size)
    derived = {"num_classes": len(data.classes), "img_size": data.img_size, "channels": data.channels,
               "mean": meta["mean"], "std": meta["std"], "steps_per_epoch": spe,
               "total_steps": spe * cfg.epochs, "runtime": runtime, "cached": data.cached, "cache_mode": data.mode,
               "world_size": world_size, "global_batch_size": recipe.batch_size * world_size,
               "train_images": data.train.num_images, "val_images": data.val.num_images,
               "rejected_files": data.rejected, "output": meta["output"], "num_outputs": meta["num_outputs"],
               "data_path": meta["data"], "recipe": recipe.to_json()}
    if cfg.weights != "none":   # the fine-tuning defaults --weights proposes (used for the options not given)
        derived["weights_preset"] = weights_preset({"model": cfg.model, "weights": cfg.weights})
    write_json(run.config_json, {**config_to_dict(cfg), "derived": derived,
                                 "command": command_line("imgclf train", cfg)})
    write_json(run.classes_json, data.classes)


def _make_trainer(cfg: TrainConfig, model: torch.nn.Module, data: TrainingData, runtime: Any, run: RunDir,
                  settings: Any, resume_state: dict | None, ctx: Dist) -> Trainer:
    resume_step = int(resume_state["step"]) if resume_state else None
    logger = MetricsLogger(run.metrics_csv, run.tensorboard_dir, resume_step) if ctx.is_main else None
    train_model = wrap_for_training(model, runtime, ctx, bool(cfg.compile))
    trainer = Trainer(model, make_optimizer(cfg, model), make_loss(cfg, data, settings.output, runtime.device),
                      runtime, settings, run, logger, ctx, train_model)
    if resume_state is not None:
        trainer.resume_from(resume_state)
        if ctx.is_main:
            status(f"resuming {run.root} at step {resume_step}")
    return trainer


def _write_summary(run: RunDir, cfg: TrainConfig, data: TrainingData, state: FitState, trainer: Trainer,
                   runtime: str, world_size: int) -> None:
    write_json(run.summary_json, {
        "run": run.root.name, "model": cfg.model, "data": str(cfg.data), "num_classes": len(data.classes),
        "classes": data.classes, "counts": {"train": data.train_counts, "val": data.val_counts},
        "img_size": data.img_size, "epochs": cfg.epochs, "steps": state.step, "best": state.best,
        "final": state.last_eval, "train_time_s": round(trainer.logger.rows and float(trainer.logger.rows[-1]["elapsed_s"]) or 0.0, 2),
        "device": runtime.split()[0], "precision": runtime, "python": sys.version.split()[0],
        "torch": torch.__version__, "machine": platform.machine(), "world_size": world_size})
