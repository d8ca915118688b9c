"""The training loop: epochs of batched, augmented steps; evaluation, logging and checkpoints.

Randomness is derived from (seed, epoch) for the data order and (seed, step) for
augmentation and dropout, and the learning rate is a function of the step, so a
run resumed from ``last.state.pt`` continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from imgclf.artifacts import RunDir
from imgclf.console import progress, status
from imgclf.data.sources import BatchSource, split_order
from imgclf.data.transforms import apply_augment, resize_batch, sample_augment_params, to_float
from imgclf.analysis.metrics import lower_is_better
from imgclf.engine.checkpoint import save_state, save_weights
from imgclf.engine.distributed import SINGLE, Dist, all_reduce_mean, barrier, broadcast_buffers, shard_batch
from imgclf.engine.evaluation import EvalResult, Preprocess, evaluate
from imgclf.engine.runtime import Runtime, derived_seed, seeded_generator
from imgclf.errors import ImgclfError
from imgclf.training.batchnorm import refresh_batch_norm
from imgclf.training.ema import WeightAverage
from imgclf.training.logger import MetricsLogger
from imgclf.training.optim import FreezePlan, optimizer_step, set_backbone_frozen, set_lr, uses_closure
from imgclf.training.schedules import LRSchedule, ResolutionSchedule
from imgclf.training.stopping import EarlyStopping

AUGMENT_STREAM = 1          # per-step seed offsets: augmentation choices ...
DROPOUT_STREAM = 7_919      # ... and dropout masks (times the rank: each rank its own masks)
BN_SAMPLE_STREAM = 31       # the fixed sample of train images that --bn-refresh measures on


@dataclass
class FitSettings:
    epochs: int
    batch_size: int
    seed: int
    crop_padding: int
    hflip: bool
    mean: torch.Tensor            # (C,) on the device
    std: torch.Tensor             # (C,) on the device
    schedule: LRSchedule          # the lr factor of every step
    clip_grad: float = 0.0
    eval_every: int = 0
    eval_batches: int = 0
    eval_batch_size: int = 256
    save_every: int = 0
    best_metric: str = "val_acc"
    preprocess: Preprocess | None = None
    meta: dict[str, Any] = field(default_factory=dict)   # stored with the weights
    output: str = "softmax"       # how logits become probabilities (imgclf.models.outputs.logits_to_probs)
    threshold: float = 0.5        # multi-label decision threshold
    teacher: Callable[[torch.Tensor], torch.Tensor] | None = None   # uint8 batch -> teacher logits
    order_fn: Callable[[int, int, int], torch.Tensor] | None = None  # (N, seed, epoch) -> epoch order
    freeze: FreezePlan = field(default_factory=FreezePlan)
    stopper: EarlyStopping | None = None
    ema_decay: float = 0.0        # > 0: evaluate and save an exponential moving average of the weights
    bn_refresh: int = 0           # > 0: BatchNorm statistics measured on this many train images before evaluating
    resolution: ResolutionSchedule | None = None   # progressive resizing: the train size of each epoch


@dataclass
class FitState:
    step: int = 0
    best: dict[str, float] = field(default_factory=dict)
    last_eval: dict[str, float] = field(default_factory=dict)


@dataclass
class Window:
    """What happened since the last logged row: summed train loss, steps, images and training seconds."""

    loss: torch.Tensor
    steps: int = 0
    images: int = 0
    time_s: float = 0.0

    @classmethod
    def empty(cls, device: torch.device) -> Window:
        return cls(torch.zeros((), device=device))

    def add_step(self, loss: torch.Tensor, images: int) -> None:
        self.loss += loss
        self.steps += 1
        self.images += images

    def mean_loss(self, ctx: Dist) -> float:
        return float(all_reduce_mean(ctx, self.loss / max(self.steps, 1)))


def epoch_order(num_images: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(num_images, generator=seeded_generator(seed, "epoch", epoch))


def epoch_batches(num_images: int, batch_size: int, seed: int, epoch: int, ctx: Dist = SINGLE,
                  order_fn: Callable[[int, int, int], torch.Tensor] | None = None) -> list[torch.Tensor]:
    """This rank's index batches for one epoch.

    One global order per (seed, epoch); under DDP each global batch of batch_size x world_size
    is split between the ranks (a last, incomplete global batch is dropped), so N processes
    with batch B see exactly the images of one process with batch N x B.
    """
    order = (order_fn or epoch_order)(num_images, seed, epoch)
    if not ctx.enabled:
        return split_order(order, batch_size)
    global_size = batch_size * ctx.world_size
    full = num_images // global_size
    return [shard_batch(order[i * global_size:(i + 1) * global_size], batch_size, ctx) for i in range(full)]


def steps_per_epoch(num_images: int, batch_size: int, world_size: int = 1) -> int:
    if world_size > 1:
        return num_images // (batch_size * world_size)
    return len(split_order(torch.arange(num_images), batch_size))


def is_better(metric: str, candidate: dict[str, float], best: dict[str, float]) -> bool:
    """Lower for a loss, else higher (ties broken by the lower val_loss)."""
    if metric not in best:
        return True
    if lower_is_better(metric):
        return candidate[metric] < best[metric]
    return (candidate[metric], -candidate["val_loss"]) > (best[metric], -best["val_loss"])


class Trainer:
    """Owns the model, optimizer and loss for one run; ``fit`` runs the epochs."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable,
                 runtime: Runtime, settings: FitSettings, run: RunDir | None, logger: MetricsLogger | None,
                 ctx: Dist = SINGLE, train_model: nn.Module | None = None) -> None:
        self.model = model                 # the plain module: evaluated and saved
        self.train_model = train_model if train_model is not None else model   # what trains (DDP or the same)
        self.optimizer, self.loss_fn = optimizer, loss_fn
        self.runtime, self.settings, self.run, self.logger, self.ctx = runtime, settings, run, logger, ctx
        # run None: keep nothing on disk (the fold models of label-issues)
        self.state = FitState()
        self.started = time.perf_counter()
        self.train_images = 0              # set by fit: the step -> epoch arithmetic needs it
        self.window = Window.empty(runtime.device)
        self.last_row: dict[str, Any] = {}
        self.average = WeightAverage(model, settings.ema_decay) if settings.ema_decay > 0 else None
        self.spe = 1                       # steps per epoch, set by fit
        self.train_source: BatchSource | None = None   # set by fit: --bn-refresh samples it

    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated and saved: the weight average when there is one, else the live model."""
        return self.average.model if self.average is not None else self.model

    # -- checkpoints -------------------------------------------------------------------
    def resume_from(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.state = FitState(step=int(saved["step"]), best=dict(saved.get("best", {})),
                              last_eval=dict(saved.get("last_eval", {})))
        if "schedule" in saved:
            self.settings.schedule.load_state_dict(saved["schedule"])
        if self.settings.stopper is not None and "stopper" in saved:
            self.settings.stopper.load_state_dict(saved["stopper"])
        if self.average is not None:
            self.average.load_state_dict(saved["ema"])

    def save(self, best: bool = False) -> None:
        """Rank 0 writes; every rank waits until the files are complete. Without a run folder: nothing."""
        if self.run is None:
            return
        if self.ctx.is_main:
            self._write_checkpoint(best)
        barrier(self.ctx)

    def _write_checkpoint(self, best: bool) -> None:
        if self.run is None:
            raise ImgclfError("this trainer has no run folder to save into")
        settings = self.settings
        spe = steps_per_epoch(self.train_images, settings.batch_size, self.ctx.world_size)
        meta = {**settings.meta, "step": self.state.step, "epoch": round(self.state.step / spe, 4),
                **{k: v for k, v in self.state.last_eval.items() if k.startswith("val_")}}
        weights = dict(self.eval_model.state_dict())
        if best:
            save_weights(self.run.weights("best"), weights, meta)
            return
        save_state(self.run.resume_state, {
            "step": self.state.step, "model": dict(self.model.state_dict()), "optimizer": self.optimizer.state_dict(),
            "best": self.state.best, "last_eval": self.state.last_eval, "torch_rng": torch.get_rng_state(),
            "schedule": settings.schedule.state_dict(),
            **({"stopper": settings.stopper.state_dict()} if settings.stopper is not None else {}),
            **({"ema": self.average.state_dict()} if self.average is not None else {}),
            "world_size": self.ctx.world_size})
        save_weights(self.run.weights("last"), weights, meta)

    # -- the loop ------------------------------------------------------------------------
    def fit(self, train: BatchSource, val: BatchSource) -> FitState:
        settings = self.settings
        self.train_images = train.num_images
        self.started = time.perf_counter()
        self.train_source = train
        spe = self.spe = steps_per_epoch(train.num_images, settings.batch_size, self.ctx.world_size)
        total = spe * settings.epochs
        while self.state.step < total:
            epoch = self.state.step // spe
            self.run_epoch(train, val, epoch, spe)
            self.evaluate_and_log(val, spe, partial=False)
            settings.schedule.after_epoch(self.last_row)
            stop = settings.stopper is not None and settings.stopper.update(self.last_row)
            self.save()
            if stop and self.state.step < total:
                if self.ctx.is_main:
                    status(f"early stopping after epoch {epoch + 1}: {settings.stopper.metric} has not improved "
                           f"for {settings.stopper.patience} epoch(s)")
                break
        return self.state

    def run_epoch(self, train: BatchSource, val: BatchSource, epoch: int, spe: int) -> None:
        """The (remaining) steps of one epoch, with the step evaluations and saves inside it."""
        settings = self.settings
        skip = self.state.step - epoch * spe
        chunks = epoch_batches(train.num_images, settings.batch_size, settings.seed, epoch, self.ctx,
                               settings.order_fn)
        if settings.freeze.freeze_backbone:
            set_backbone_frozen(self.model, settings.freeze.frozen_at(epoch))
        order = torch.cat(chunks[skip:]) if skip < len(chunks) else torch.empty(0, dtype=torch.long)
        batches = train.batches(order, settings.batch_size)
        self.train_model.train()
        tick = time.perf_counter()
        if self.ctx.is_main:
            batches = progress(batches, total=spe - skip, desc=f"epoch {epoch + 1}/{settings.epochs}", unit="batch")
        for images, targets in batches:
            self.window.add_step(self.train_step(images, targets), len(targets) * self.ctx.world_size)
            self.state.step += 1
            at_epoch_end = self.state.step % spe == 0
            if settings.eval_every and self.state.step % settings.eval_every == 0 and not at_epoch_end:
                self.window.time_s += time.perf_counter() - tick
                self.evaluate_and_log(val, spe, partial=bool(settings.eval_batches))
                tick = time.perf_counter()
            if settings.save_every and self.state.step % settings.save_every == 0 and not at_epoch_end:
                self.save()
        self.window.time_s += time.perf_counter() - tick

    def seed_step(self, step: int) -> None:
        """Dropout & co. depend on (seed, step, rank) only: exact resume, the same masks on re-evaluation."""
        torch.manual_seed(derived_seed(self.settings.seed, "step", step, DROPOUT_STREAM * self.ctx.rank))

    def train_step(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        settings, step = self.settings, self.state.step
        self.seed_step(step)
        images = images.to(self.runtime.device, non_blocking=True)
        targets = targets.to(self.runtime.device, non_blocking=True)
        if settings.preprocess is not None:
            images = settings.preprocess(images)
        # the choices are drawn for the whole global batch, then sliced: N ranks x B == 1 rank x N*B
        n, rank = images.shape[0], self.ctx.rank
        params = sample_augment_params(n * self.ctx.world_size, settings.crop_padding, settings.hflip,
                                       seeded_generator(settings.seed, "step", step, AUGMENT_STREAM)
                                       )[rank * n:(rank + 1) * n]
        images = apply_augment(images, settings.crop_padding, params)
        x = to_float(images, settings.mean, settings.std, self.runtime.channels_last)
        if settings.resolution is not None:
            x = resize_batch(x, settings.resolution.size_at(step // self.spe))
        set_lr(self.optimizer, settings.schedule.factor)
        extra = (settings.teacher(images),) if settings.teacher is not None else ()
        # LBFGS re-evaluates the loss: full precision, and the same dropout masks each time
        closure = uses_closure(self.optimizer)
        autocast = contextlib.nullcontext if closure else self.runtime.autocast

        def forward_loss() -> torch.Tensor:
            if closure:
                self.seed_step(step)
            with autocast():
                logits = self.train_model(x)
            return self.loss_fn(logits.float(), targets, *extra)

        loss = optimizer_step(self.optimizer, forward_loss, settings.clip_grad, step)
        settings.schedule.after_step()
        if self.average is not None:
            self.average.update(self.model, step)
        return loss

    def refresh_statistics(self) -> None:
        """``--bn-refresh``: the eval model's BatchNorm statistics from a fixed sample of train images
        (the same on every rank, without augmentation, at the full size)."""
        settings, train = self.settings, self.train_source
        if settings.bn_refresh <= 0 or train is None:
            return
        generator = seeded_generator(settings.seed, "epoch", 0, BN_SAMPLE_STREAM)
        sample = torch.randperm(train.num_images, generator=generator)[:settings.bn_refresh]

        def inputs() -> Iterator[torch.Tensor]:
            for images, _ in train.batches(sample, settings.batch_size):
                images = images.to(self.runtime.device, non_blocking=True)
                if settings.preprocess is not None:
                    images = settings.preprocess(images)
                yield to_float(images, settings.mean, settings.std, self.runtime.channels_last)

        refresh_batch_norm(self.eval_model, inputs(), self.runtime.autocast)

    def evaluate_and_log(self, val: BatchSource, spe: int, partial: bool) -> EvalResult:
        settings, window = self.settings, self.window
        self.refresh_statistics()
        broadcast_buffers(self.ctx, self.eval_model)
        result = evaluate(self.eval_model, val, self.runtime, settings.mean, settings.std, settings.eval_batch_size,
                          settings.eval_batches if partial else 0, settings.preprocess, self.ctx,
                          settings.output, settings.threshold)
        self.train_model.train()
        train_loss = window.mean_loss(self.ctx)
        row = {"step": self.state.step, "epoch": round(self.state.step / spe, 4),
               "train_loss": round(train_loss, 6) if window.steps else "",
               "val_loss": round(result.loss, 6), "val_acc": round(result.accuracy, 6),
               "lr": self.optimizer.param_groups[0]["lr"],
               "img_per_s": round(window.images / window.time_s, 1) if window.time_s > 0 else "",
               "elapsed_s": round(time.perf_counter() - self.started, 2), "val_images": result.num_images,
               **{k: round(v, 6) for k, v in result.extra.items()}}
        self.last_row = row
        if self.logger is not None:
            self.logger.log(row)
        self.window = Window.empty(self.runtime.device)
        if not partial:
            self.state.last_eval = {"step": self.state.step, "epoch": row["epoch"], "val_acc": result.accuracy,
                                    "val_loss": result.loss}
            if is_better(settings.best_metric, self.state.last_eval, self.state.best):
                self.state.best = dict(self.state.last_eval)
                self.save(best=True)
        return result
