"""``imgclf train``: data -> model -> fit -> run folder. Orchestration only."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from imgclf.artifacts import RunDir, new_run_dir
from imgclf.config import TrainConfig, command_line, config_to_dict
from imgclf.config.fields import build_config, resumable_fields
from imgclf.config.train import weights_preset
from imgclf.analysis.enhance import make_preprocess
from imgclf.console import print_table, status, warn
from imgclf.data.balance import loss_weights, sampler_order_fn
from imgclf.data.multilabel import load_multilabel_data, resolve_multi_label
from imgclf.data.stats import imbalance_warning
from imgclf.data.training import TrainingData, load_training_data, preprocess_cached
from imgclf.data.transforms import Preprocess, normalization
from imgclf.engine.checkpoint import load_state
from imgclf.engine.distributed import (Dist, barrier, broadcast_object, init_distributed, launched_by_torchrun,
                                      shutdown)
from imgclf.engine.runtime import Runtime, configure_threads, resolve_device, resolve_runtime, seed_everything
from imgclf.errors import ImgclfError
from imgclf.io import read_json, remove_stale_temps, single_writer, write_json
from imgclf.models.init import init_weights
from imgclf.models.outputs import num_model_outputs
from imgclf.models.pretrained import fetch_torchvision_weights, load_pretrained, load_torchvision_weights
from imgclf.models.registry import check_trusted, create_model, list_models
from imgclf.training.distill import DistillationLoss, load_teacher
from imgclf.training.fit import FitSettings, FitState, Trainer, steps_per_epoch
from imgclf.training.logger import MetricsLogger
from imgclf.training.losses import create_loss, loss_name_for, resolve_output
from imgclf.training.optim import FreezePlan, create_optimizer
from imgclf.training.schedules import create_schedule
from imgclf.training.stopping import EarlyStopping


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
            return _train(cfg, ctx, locks)
    finally:
        shutdown(ctx)


def _lock_run(locks: contextlib.ExitStack, root: Path, ctx: Dist) -> None:
    """One writer per run folder (rank 0 writes for all ranks): a second train on it stops."""
    if ctx.is_main:
        locks.enter_context(single_writer(RunDir(root).lock, str(root)))


def _train(cfg: TrainConfig, ctx: Dist, locks: contextlib.ExitStack) -> TrainResult:
    resume_state = None
    if cfg.resume is not None:
        RunDir(cfg.resume).require_trained()
        _lock_run(locks, cfg.resume, ctx)
        cfg, resume_state = _resumed_config(cfg, ctx)
    runtime = resolve_runtime(cfg.device, cfg.precision)
    configure_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    seed_everything(cfg.seed, cfg.deterministic)
    if resume_state is None and cfg.weights != "none":   # fetch (or fail) before anything is written
        fetch_torchvision_weights(cfg.model, cfg.weights, cfg.offline)
    multi_label = resolve_multi_label(cfg.data, cfg.multi_label)
    preprocess = make_preprocess(cfg.preprocess)
    data = _load_data(cfg, multi_label, pin=runtime.device.type == "cuda", preprocess=preprocess)
    if data.preprocessed:
        preprocess = None   # applied once to the decoded images, not every epoch
    mean, std = normalization(cfg.normalize, data.channels, data.mean, data.std)
    root = cfg.resume if cfg.resume is not None else (_make_run_dir(cfg) if ctx.is_main else None)
    if cfg.resume is None and root is not None:
        _lock_run(locks, root, ctx)
    run_dir = RunDir(Path(broadcast_object(ctx, str(root))))
    meta = _weights_meta(cfg, data, mean, std, resolve_output(cfg.loss, multi_label, data.classes))
    if resume_state is None and ctx.is_main:
        _write_run_start(run_dir, cfg, data, meta, runtime.describe(), ctx.world_size)
    model = _build_model(cfg, data, runtime, int(meta["num_outputs"]))
    trainer = _make_trainer(cfg, model, data, runtime, run_dir, mean, std, meta, resume_state, ctx, preprocess)
    if ctx.is_main:
        ranks = f" x {ctx.world_size} processes" if ctx.enabled else ""
        status(f"training {cfg.model} on {data.train.num_images} images ({len(data.classes)} classes) at "
               f"{data.img_size}px, {runtime.describe()}{ranks}; run folder {run_dir.root}")
    try:
        state = trainer.fit(data.train, data.val)
    finally:
        if trainer.logger is not None:
            trainer.logger.close()
    if ctx.is_main:
        _write_summary(run_dir, cfg, data, state, trainer, runtime.describe(), ctx.world_size)
        print_table(["", "step", "epoch", "val_acc", "val_loss"],
                    [[name, int(r["step"]), float(r["epoch"]), float(r["val_acc"]), float(r["val_loss"])]
                     for name, r in (("final", state.last_eval), ("best", state.best))])
        print(f"run folder: {run_dir.root}")
    return TrainResult(run_dir.root, state.last_eval, state.best)


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


def _resumed_config(cfg: TrainConfig, ctx: Dist) -> tuple[TrainConfig, dict[str, Any]]:
    run = RunDir(Path(cfg.resume))  # type: ignore[arg-type]
    run.require_trained()
    removed = sum(map(remove_stale_temps, (run.root, run.checkpoints_dir))) if ctx.is_main else 0
    barrier(ctx)
    if removed:
        status(f"removed {removed} incomplete temp file(s) left by an interrupted save")
    saved = {k: v for k, v in read_json(run.config_json).items() if k not in ("derived", "command")}
    defaults, resumable = TrainConfig(), resumable_fields(TrainConfig)
    overrides = {k: getattr(cfg, k) for k in resumable if getattr(cfg, k) != getattr(defaults, k)}
    # consent to import model code comes from this command line, never from the run's files
    own = resumable + ("resume", "data", "force", "trust_model_code", "model")
    ignored = [f.name for f in dataclasses.fields(cfg) if f.name not in own
               and getattr(cfg, f.name) != getattr(defaults, f.name)]
    if ignored:
        warn(f"on --resume the run's own settings are used; ignored: {', '.join('--' + n.replace('_', '-') for n in ignored)}")
    if cfg.model != defaults.model and cfg.model != saved.get("model"):
        warn(f"on --resume the run's own model {saved.get('model')} is used; ignored: --model {cfg.model}")
    trusted = cfg.trust_model_code or cfg.model == saved.get("model")
    check_trusted(str(saved.get("model", "")), trusted, str(run.config_json), f" (or --model {saved.get('model')})")
    saved.update(overrides, resume=str(run.root), force=True, nproc=1, trust_model_code=trusted)
    state = load_state(run.resume_state)
    check_world_size(run, state, ctx.world_size)
    return build_config(TrainConfig, saved), state


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


def _load_data(cfg: TrainConfig, multi_label: bool, pin: bool, preprocess: Preprocess | None) -> TrainingData:
    """Single- or multi-label training data; warns about class imbalance unless --balance handles it."""
    if cfg.data is None:
        raise ImgclfError("DATA is required (or --resume RUN)")
    channels = 1 if cfg.channels == "gray" else 3
    if multi_label:
        data = load_multilabel_data(cfg.data, cfg.img_size, channels, cfg.cache_gb, cfg.workers)
        data = preprocess_cached(data, preprocess) if preprocess is not None else data
    else:
        data = load_training_data(cfg.data, cfg.img_size, channels, cfg.cache, cfg.cache_gb, cfg.workers, pin=pin,
                                  preprocess=cfg.preprocess, preprocess_fn=preprocess, cache_dir=cfg.cache_dir)
    message = imbalance_warning(data.train_counts)
    if message and cfg.balance == "none":
        warn(message)
    return data


def _weights_meta(cfg: TrainConfig, data: TrainingData, mean: list[float], std: list[float],
                  output: str) -> dict[str, Any]:
    """What a checkpoint carries so ``predict`` rebuilds the model and its exact eval pipeline."""
    return {"format": "imgclf-weights-1", "model": cfg.model, "num_classes": len(data.classes),
            "in_channels": data.channels, "classes": data.classes, "img_size": data.img_size,
            "resize": "shorter-side + centre crop", "mean": mean, "std": std, "preprocess": cfg.preprocess,
            "data": str(cfg.data.resolve()) if cfg.data else None, "output": output,
            "num_outputs": num_model_outputs(output, len(data.classes)), "threshold": cfg.threshold}


def _write_run_start(run: RunDir, cfg: TrainConfig, data: TrainingData, meta: dict, runtime: str,
                     world_size: int) -> None:
    spe = steps_per_epoch(data.train.num_images, cfg.batch_size, world_size)
    derived = {"num_classes": len(data.classes), "img_size": data.img_size, "channels": data.channels,
               "mean": meta["mean"], "std": meta["std"], "steps_per_epoch": spe,
               "total_steps": spe * cfg.epochs, "runtime": runtime, "cached": data.cached, "cache_mode": data.mode,
               "world_size": world_size, "global_batch_size": cfg.batch_size * world_size,
               "train_images": data.train.num_images, "val_images": data.val.num_images,
               "rejected_files": data.rejected, "output": meta["output"], "num_outputs": meta["num_outputs"],
               "data_path": meta["data"]}
    if cfg.weights != "none":   # the fine-tuning defaults --weights proposes (used for the options not given)
        derived["weights_preset"] = weights_preset({"model": cfg.model, "weights": cfg.weights})
    write_json(run.config_json, {**config_to_dict(cfg), "derived": derived,
                                 "command": command_line("imgclf train", cfg)})
    write_json(run.classes_json, data.classes)


def _build_model(cfg: TrainConfig, data: TrainingData, runtime: Any, num_outputs: int) -> torch.nn.Module:
    model = create_model(cfg.model, num_outputs, data.channels)
    init_weights(model, cfg.init)
    if cfg.resume is None and cfg.pretrained is not None:
        status(f"--pretrained {cfg.pretrained}: {load_pretrained(model, cfg.pretrained).summary()}")
    elif cfg.resume is None and cfg.weights != "none":
        report = load_torchvision_weights(model, cfg.model, cfg.weights, cfg.offline)
        status(f"--weights {cfg.weights}: {report.summary()}")
    model = model.to(runtime.device)
    if runtime.channels_last and cfg.optimizer != "lbfgs":   # LBFGS flattens grads with .view()
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if cfg.compile else model


def _make_trainer(cfg: TrainConfig, model: torch.nn.Module, data: TrainingData, runtime: Any, run: RunDir,
                  mean: list[float], std: list[float], meta: dict, resume_state: dict | None, ctx: Dist,
                  preprocess: Preprocess | None) -> Trainer:
    optimizer = create_optimizer(cfg.optimizer, model, cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay,
                                 cfg.head_lr)
    spe = steps_per_epoch(data.train.num_images, cfg.batch_size, ctx.world_size)
    schedule = create_schedule(cfg.scheduler, cfg.sched_args, spe, cfg.epochs, cfg.warmup_epochs,
                               {"step_size": cfg.step_size, "milestones": cfg.milestones, "gamma": cfg.gamma})
    stopper = EarlyStopping(cfg.early_stop_metric or cfg.best_metric, cfg.patience) if cfg.patience else None
    padding = data.img_size // 8 if cfg.crop_padding < 0 else cfg.crop_padding
    settings = FitSettings(
        epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, crop_padding=padding, hflip=cfg.hflip,
        mean=torch.tensor(mean, device=runtime.device), std=torch.tensor(std, device=runtime.device),
        schedule=schedule, clip_grad=cfg.clip_grad, eval_every=cfg.eval_every, eval_batches=cfg.eval_batches,
        save_every=cfg.save_every, best_metric=cfg.best_metric, preprocess=preprocess,
        meta=meta, output=meta["output"], threshold=cfg.threshold, teacher=_make_teacher(cfg, data),
        order_fn=sampler_order_fn(data.train.targets) if cfg.balance == "sampler" else None,
        freeze=FreezePlan(cfg.freeze_backbone, cfg.unfreeze_at), stopper=stopper)
    resume_step = int(resume_state["step"]) if resume_state else None
    logger = MetricsLogger(run.metrics_csv, run.tensorboard_dir, resume_step) if ctx.is_main else None
    train_model = wrap_ddp(model, runtime, ctx)
    loss = _make_loss(cfg, data, meta["output"], runtime.device)
    trainer = Trainer(model, optimizer, loss, runtime, settings, run, logger, ctx, train_model)
    if resume_state is not None:
        trainer.resume_from(resume_state)
        if ctx.is_main:
            status(f"resuming {run.root} at step {resume_step}")
    return trainer


def _make_loss(cfg: TrainConfig, data: TrainingData, output: str, device: torch.device) -> torch.nn.Module:
    """The loss of the output kind, class-weighted with ``--balance loss``, wrapped for ``--teacher``."""
    weights = None
    if cfg.balance == "loss":
        counts = torch.tensor([float(data.train_counts[c]) for c in data.classes])
        weights = loss_weights(counts, data.train.num_images, multi_label=output == "multilabel")
        status(f"--balance loss: class weights {[round(w, 3) for w in weights.tolist()]}")
    loss = create_loss(loss_name_for(output), cfg.label_smoothing, weights).to(device)
    return DistillationLoss(loss, cfg.kd_temperature, cfg.kd_alpha) if cfg.teacher is not None else loss


def _make_teacher(cfg: TrainConfig, data: TrainingData) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if cfg.teacher is None:
        return None
    trust = True if cfg.trust_model_code else (cfg.model,)   # or the model named on this command line
    teacher = load_teacher(cfg.teacher, data.classes, cfg.device, cfg.precision, trust)
    status(f"distilling from {cfg.teacher} (T={cfg.kd_temperature}, alpha={cfg.kd_alpha})")
    return teacher


def wrap_ddp(model: torch.nn.Module, runtime: Runtime, ctx: Dist) -> torch.nn.Module:
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.local_rank] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def _write_summary(run: RunDir, cfg: TrainConfig, data: TrainingData, state: FitState, trainer: Trainer,
                   runtime: str, world_size: int) -> None:
    write_json(run.summary_json, {
        "run": run.root.name, "model": cfg.model, "data": str(cfg.data), "num_classes": len(data.classes),
        "classes": data.classes, "counts": {"train": data.train_counts, "val": data.val_counts},
        "img_size": data.img_size, "epochs": cfg.epochs, "steps": state.step, "best": state.best,
        "final": state.last_eval, "train_time_s": round(trainer.logger.rows and float(trainer.logger.rows[-1]["elapsed_s"]) or 0.0, 2),
        "device": runtime.split()[0], "precision": runtime, "python": sys.version.split()[0],
        "torch": torch.__version__, "machine": platform.machine(), "world_size": world_size})
