"""From a ``TrainConfig`` to the objects that train: data, recipe, model, optimizer, loss, settings.

Shared by ``imgclf train`` and ``imgclf lr-find`` (which trains a few hundred steps with the very
same pieces). The rules behind ``auto`` live in :mod:`imgclf.training.recipe`; this module only
applies them to a config and says what they chose.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from imgclf.config import TrainConfig
from imgclf.console import status, warn
from imgclf.data.balance import loss_weights, sampler_order_fn
from imgclf.data.multilabel import load_multilabel_data
from imgclf.data.stats import imbalance_warning
from imgclf.data.training import TrainingData, load_training_data, preprocess_cached
from imgclf.data.transforms import Preprocess
from imgclf.engine.distributed import Dist, broadcast_object
from imgclf.engine.runtime import Runtime, resolve_device, resolve_runtime
from imgclf.errors import ImgclfError
from imgclf.models.init import init_weights
from imgclf.models.outputs import num_model_outputs
from imgclf.models.pretrained import load_pretrained, load_torchvision_weights
from imgclf.models.registry import create_model
from imgclf.training import recipe as rules
from imgclf.training.distill import DistillationLoss, load_teacher
from imgclf.training.fit import FitSettings, Trainer, steps_per_epoch
from imgclf.training.lr_find import RampSchedule, RangeTest, endless_batches, lr_ramp, range_test
from imgclf.training.losses import create_loss, loss_name_for
from imgclf.training.optim import FreezePlan, create_optimizer
from imgclf.training.schedules import ResolutionSchedule, create_schedule
from imgclf.training.stopping import EarlyStopping



@dataclass(frozen=True)
class Recipe:
    """What ``auto`` resolved to for this run (recorded in config.json as ``derived.recipe``)."""

    model: str
    batch_size: int
    lr: float
    warmup_steps: int
    precision: str
    compile: bool = False
    notes: tuple[str, ...] = ()     # one line per choice: what was picked and why

    def apply(self, cfg: TrainConfig) -> TrainConfig:
        """The config the run trains with: every ``auto`` replaced by its value."""
        return dataclasses.replace(cfg, model=self.model, batch_size=self.batch_size, lr=self.lr,
                                   warmup_steps=self.warmup_steps, precision=self.precision, compile=self.compile)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "batch_size": self.batch_size, "lr": self.lr, "warmup_steps": self.warmup_steps,
                "precision": self.precision, "compile": self.compile, "notes": list(self.notes)}


def load_data(cfg: TrainConfig, multi_label: bool, pin: bool, preprocess: Preprocess | None) -> TrainingData:
    """Single- or multi-label training data; warns about class imbalance unless --balance handles it."""
    if cfg.data is None:
        raise ImgclfError("DATA is required (or --resume RUN)")
    channels = 1 if cfg.channels == "gray" else 3
    size_rule = rules.recipe_img_size if recipe_sizes_images(cfg) else None
    if multi_label:
        data = load_multilabel_data(cfg.data, cfg.img_size, channels, cfg.cache_gb, cfg.workers, size_rule)
        data = preprocess_cached(data, preprocess) if preprocess is not None else data
    else:
        data = load_training_data(cfg.data, cfg.img_size, channels, cfg.cache, cfg.cache_gb, cfg.workers, pin=pin,
                                  preprocess=cfg.preprocess, preprocess_fn=preprocess, cache_dir=cfg.cache_dir,
                                  size_rule=size_rule)
    message = imbalance_warning(data.train_counts)
    if message and cfg.balance == "none":
        warn(message)
    return data


def recipe_sizes_images(cfg: TrainConfig) -> bool:
    """``--img-size auto`` follows the recipe's rule with ``--model auto`` (a named model or pretrained
    weights keep the data's own size)."""
    return cfg.img_size == 0 and cfg.model == "auto" and cfg.pretrained is None and cfg.weights == "none"


def resolve_model(cfg: TrainConfig, data: TrainingData) -> tuple[str, str | None]:
    """(model name, a note when ``auto`` chose it)."""
    if cfg.model != "auto":
        return cfg.model, None
    if cfg.pretrained is not None or cfg.weights != "none":
        return rules.PRETRAINED_MODEL, (f"model {rules.PRETRAINED_MODEL}: the pretrained weights' architecture "
                                        "(name another with --model)")
    name = rules.choose_model(data.img_size, data.train.num_images)
    return name, f"model {name}: {data.train.num_images} train images at {data.img_size} px"


def resolve_precision(cfg: TrainConfig, model_name: str, data: TrainingData, num_outputs: int,
                      ctx: Dist) -> tuple[Runtime, str | None]:
    """The runtime; ``--precision auto`` for training on a CPU is decided by a timed probe (rank 0 measures)."""
    runtime = resolve_runtime(cfg.device, cfg.precision)
    if cfg.precision != "auto" or runtime.device.type != "cpu" or cfg.optimizer == "lbfgs":
        return runtime, None
    from imgclf.engine.precision import probe_precision

    verdict = None
    if ctx.is_main:
        verdict = probe_precision(lambda: create_model(model_name, num_outputs, data.channels), model_name,
                                  data.channels, data.img_size, cfg.batch_size)
    precision, reason = broadcast_object(ctx, (verdict.precision, verdict.reason()) if verdict else None)
    return dataclasses.replace(runtime, precision=precision), f"precision {reason}"


def resolve_compile(cfg: TrainConfig, model_name: str, data: TrainingData, num_outputs: int, runtime: Runtime,
                    steps: int, ctx: Dist) -> tuple[bool, str | None]:
    """``--compile`` as given, or (auto) whether a measured compile pays back within ``steps`` steps."""
    if cfg.compile is not None:
        return bool(cfg.compile), None
    if cfg.optimizer == "lbfgs":
        return False, None
    from imgclf.engine.compilation import decide_compile
    from imgclf.engine.precision import probe_key

    decision = None
    if ctx.is_main:
        generator = torch.Generator().manual_seed(0)
        shape = (cfg.batch_size, data.channels, data.img_size, data.img_size)
        images = torch.randn(shape, generator=generator).to(runtime.device, memory_format=torch.channels_last)
        targets = torch.randint(0, num_outputs, (cfg.batch_size,), generator=generator).to(runtime.device)
        where = torch.cuda.get_device_name(runtime.device) if runtime.device.type == "cuda" else "cpu"
        key = f"{probe_key(model_name, data.channels, data.img_size, cfg.batch_size)} | {where} {runtime.precision}"
        decision = decide_compile(lambda: create_model(model_name, num_outputs, data.channels), key, images, targets,
                                  runtime.amp_dtype, steps)
    compile_model, reason = broadcast_object(ctx, (decision.compile, decision.reason) if decision else None)
    return compile_model, reason


def resolve_recipe(cfg: TrainConfig, data: TrainingData, num_outputs: int, ctx: Dist) -> tuple[Recipe, Runtime]:
    """Every ``auto`` of the config decided for this data (``--lr find`` is settled later, by a range test)."""
    notes: list[str] = []
    if data.native_size and data.native_size != data.img_size:
        notes.append(f"img size {data.img_size}: half the data's {data.native_size} px (over "
                     f"{rules.HALVE_ABOVE} px and {rules.HALVE_MIN_IMAGES:,} images, half the size trains as well "
                     "in about half the time)")
    model, note = resolve_model(cfg, data)
    notes += [note] if note else []
    batch = int(cfg.batch_size) if cfg.batch_size != "auto" else rules.recipe_batch_size(data.train.num_images,
                                                                                          ctx.world_size)
    if cfg.batch_size == "auto":
        notes.append(f"batch {batch}: {data.train.num_images} train images")
    cfg = dataclasses.replace(cfg, batch_size=batch)
    steps = steps_per_epoch(data.train.num_images, batch, ctx.world_size) * cfg.epochs
    device = resolve_device(cfg.device)
    # the probes build and step throw-away models: the run's random numbers must not depend on whether
    # they measured or read the cache, nor differ between rank 0 (which probes) and the other ranks
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        runtime, note = resolve_precision(cfg, model, data, num_outputs, ctx)
        notes += [note] if note else []
        compile_model, note = resolve_compile(cfg, model, data, num_outputs, runtime, steps, ctx)
        notes += [note] if note else []
    warmup = rules.recipe_warmup_steps(steps) if cfg.warmup_steps == "auto" else int(cfg.warmup_steps)
    if cfg.warmup_steps == "auto":
        notes.append(f"warm-up {warmup} of {steps} steps")
    lr: float = cfg.lr if isinstance(cfg.lr, float) else 0.0
    if cfg.lr == "auto":
        facts = rules.RunFacts(data.img_size, data.train.num_images, batch * ctx.world_size, steps)
        lr = rules.recipe_lr(facts)
        notes.append(f"lr {lr:.4g}: batch {facts.global_batch}, {steps} steps")
    return Recipe(model, batch, lr, warmup, runtime.precision, compile_model, tuple(notes)), runtime


def weights_meta(cfg: TrainConfig, data: TrainingData, mean: list[float], std: list[float],
                 output: str) -> dict[str, Any]:
    """What a checkpoint carries so ``predict`` rebuilds the model and its exact eval pipeline."""
    return {"format": "imgclf-weights-1", "model": cfg.model, "num_classes": len(data.classes),
            "in_channels": data.channels, "classes": data.classes, "img_size": data.img_size,
            "resize": "shorter-side + centre crop", "mean": mean, "std": std, "preprocess": cfg.preprocess,
            "data": str(cfg.data.resolve()) if cfg.data else None, "output": output,
            "num_outputs": num_model_outputs(output, len(data.classes)), "threshold": cfg.threshold}


def build_model(cfg: TrainConfig, data: TrainingData, runtime: Runtime, num_outputs: int) -> torch.nn.Module:
    """The model with its starting weights, on the device, in the memory layout the runtime wants."""
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
    return model


def fit_settings(cfg: TrainConfig, data: TrainingData, runtime: Runtime, mean: list[float], std: list[float],
                 meta: dict[str, Any], preprocess: Preprocess | None, world_size: int) -> FitSettings:
    """Everything the loop needs besides the model, optimizer and loss (cfg has no ``auto`` left)."""
    spe = steps_per_epoch(data.train.num_images, cfg.batch_size, world_size)
    schedule = create_schedule(cfg.scheduler, cfg.sched_args, spe, cfg.epochs, int(cfg.warmup_steps),
                               {"step_size": cfg.step_size, "milestones": cfg.milestones, "gamma": cfg.gamma})
    stopper = EarlyStopping(cfg.early_stop_metric or cfg.best_metric, cfg.patience) if cfg.patience else None
    padding = data.img_size // 8 if cfg.crop_padding < 0 else cfg.crop_padding
    resolution = None
    if cfg.progressive > 0:
        start = max(8, round(cfg.progressive * data.img_size / 8) * 8)
        resolution = ResolutionSchedule(start, data.img_size, full_at=max(1, round(0.75 * (cfg.epochs - 1))))
    return FitSettings(
        epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, crop_padding=padding, hflip=cfg.hflip,
        mean=torch.tensor(mean, device=runtime.device), std=torch.tensor(std, device=runtime.device),
        schedule=schedule, clip_grad=cfg.clip_grad, eval_every=cfg.eval_every, eval_batches=cfg.eval_batches,
        save_every=cfg.save_every, best_metric=cfg.best_metric, preprocess=preprocess,
        meta=meta, output=meta["output"], threshold=cfg.threshold, teacher=make_teacher(cfg, data),
        order_fn=sampler_order_fn(data.train.targets) if cfg.balance == "sampler" else None,
        freeze=FreezePlan(cfg.freeze_backbone, cfg.unfreeze_at), stopper=stopper, ema_decay=cfg.ema,
        bn_refresh=cfg.bn_refresh, resolution=resolution)


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    return create_optimizer(cfg.optimizer, model, float(cfg.lr), cfg.momentum, cfg.nesterov, cfg.weight_decay,
                            cfg.head_lr)


def make_loss(cfg: TrainConfig, data: TrainingData, output: str, device: torch.device) -> torch.nn.Module:
    """The loss of the output kind, class-weighted with ``--balance loss``, wrapped for ``--teacher``."""
    weights = None
    if cfg.balance == "loss":
        counts = torch.tensor([float(data.train_counts[c]) for c in data.classes])
        weights = loss_weights(counts, data.train.num_images, multi_label=output == "multilabel")
        status(f"--balance loss: class weights {[round(w, 3) for w in weights.tolist()]}")
    loss = create_loss(loss_name_for(output), cfg.label_smoothing, weights).to(device)
    return DistillationLoss(loss, cfg.kd_temperature, cfg.kd_alpha) if cfg.teacher is not None else loss


def make_teacher(cfg: TrainConfig, data: TrainingData) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if cfg.teacher is None:
        return None
    trust = True if cfg.trust_model_code else (cfg.model,)   # or the model named on this command line
    teacher = load_teacher(cfg.teacher, data.classes, cfg.device, cfg.precision, trust)
    status(f"distilling from {cfg.teacher} (T={cfg.kd_temperature}, alpha={cfg.kd_alpha})")
    return teacher


def wrap_for_training(model: torch.nn.Module, runtime: Runtime, ctx: Dist, compile_model: bool) -> torch.nn.Module:
    """What runs the training steps: the model itself, compiled, and/or wrapped in DDP (the plain
    module stays what is evaluated and saved, so checkpoints never carry a wrapper's names)."""
    if compile_model:
        model = torch.compile(model)
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.local_rank] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


@dataclass(frozen=True)
class RangeTestSpec:
    start_lr: float = 1e-5
    end_lr: float = 10.0
    num_steps: int = 100


def run_range_test(cfg: TrainConfig, data: TrainingData, runtime: Runtime, model: torch.nn.Module,
                   settings: FitSettings, ctx: Dist, spec: RangeTestSpec = RangeTestSpec()) -> RangeTest:
    """The learning-rate range test on a copy of ``model`` with the run's own data, augmentation, loss
    and optimizer (its peak lr set to the end of the ramp); ``model`` itself is not touched."""
    probe = copy.deepcopy(model)
    lrs = lr_ramp(spec.start_lr, spec.end_lr, spec.num_steps)
    cfg = dataclasses.replace(cfg, lr=spec.end_lr)
    settings = dataclasses.replace(settings, schedule=RampSchedule(lrs, spec.end_lr), ema_decay=0.0,
                                   resolution=None, teacher=settings.teacher)
    trainer = Trainer(probe, make_optimizer(cfg, probe), make_loss(cfg, data, settings.output, runtime.device),
                      runtime, settings, None, None, ctx, wrap_for_training(probe, runtime, ctx, False))
    trainer.model.train()

    def train_step(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = trainer.train_step(images, targets)
        trainer.state.step += 1
        return loss

    return range_test(train_step, endless_batches(data.train, cfg.batch_size, cfg.seed, ctx), lrs)
