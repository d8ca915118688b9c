"""Out-of-fold probabilities: K models, each trained on K-1 folds and asked about the fold it never saw.

Every image's probabilities then come from a model that did not train on it, which is what
confident learning needs to find label errors in the very split the models learn from. Each fold
trains through the ordinary loop (:class:`imgclf.training.fit.Trainer`) with the settings given,
seeded by (seed, fold), keeping nothing on disk; folds run in parallel worker processes when
``jobs`` > 1, each with its share of the CPU threads, or one after the other (on a GPU).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from imgclf.data.sources import TensorSource


@dataclass(frozen=True)
class FoldTraining:
    """How every fold model trains (explicit values; ``imgclf label-issues`` fills them)."""

    model: str
    num_classes: int
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    label_smoothing: float
    warmup_steps: int
    crop_padding: int
    hflip: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"


@dataclass(frozen=True)
class FoldResult:
    fold: int
    holdout: np.ndarray     # (n,) indices of the images this fold's model never trained on
    probs: np.ndarray       # (n, K) float64: its probabilities for them
    accuracy: float
    elapsed_s: float


def assign_folds(targets: np.ndarray, num_folds: int, seed: int) -> np.ndarray:
    """(N,) fold of each sample, stratified: each class is shuffled (seeded) and dealt round-robin."""
    targets = np.asarray(targets)
    folds = np.zeros(len(targets), dtype=np.int64)
    offset = 0
    for cls in np.unique(targets):
        members = np.flatnonzero(targets == cls)
        members = members[np.random.default_rng([seed, int(cls)]).permutation(len(members))]
        folds[members] = (np.arange(len(members)) + offset) % num_folds
        offset += len(members)   # small classes do not all start in fold 0
    return folds


def fit_fold(spec: FoldTraining, images: torch.Tensor, targets: torch.Tensor, folds: np.ndarray,
             fold: int) -> FoldResult:
    """Train on every fold but ``fold`` (uint8 images (N, C, S, S), targets (N,)); predict ``fold``."""
    from imgclf.engine.evaluation import predict_batches
    from imgclf.engine.runtime import resolve_runtime, seed_everything
    from imgclf.models.registry import create_model
    from imgclf.training.fit import FitSettings, Trainer, steps_per_epoch
    from imgclf.training.losses import create_loss
    from imgclf.training.optim import create_optimizer
    from imgclf.training.schedules import create_schedule

    started = time.perf_counter()
    seed = spec.seed * 1_000 + fold
    seed_everything(seed)
    runtime = resolve_runtime(spec.device, spec.precision)
    train_idx = torch.from_numpy(np.flatnonzero(folds != fold))
    holdout = np.flatnonzero(folds == fold)
    train = TensorSource(images[train_idx], targets[train_idx])
    held = TensorSource(images[torch.from_numpy(holdout)], targets[torch.from_numpy(holdout)])
    model = create_model(spec.model, spec.num_classes, images.shape[1]).to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = create_optimizer("sgd", model, spec.lr, spec.momentum, spec.nesterov, spec.weight_decay)
    spe = steps_per_epoch(train.num_images, spec.batch_size)
    mean = torch.tensor(spec.mean, device=runtime.device)
    std = torch.tensor(spec.std, device=runtime.device)
    settings = FitSettings(epochs=spec.epochs, batch_size=spec.batch_size, seed=seed, crop_padding=spec.crop_padding,
                           hflip=spec.hflip, mean=mean, std=std,
                           schedule=create_schedule("cosine", (), spe, spec.epochs, spec.warmup_steps))
    loss = create_loss("ce", spec.label_smoothing).to(runtime.device)
    state = Trainer(model, optimizer, loss, runtime, settings, None, None).fit(train, held)
    probs, _ = predict_batches(model, held, runtime, mean, std)
    return FoldResult(fold, holdout, probs.double().numpy(), float(state.last_eval["val_acc"]),
                      time.perf_counter() - started)


_SHARED: dict[str, object] = {}


def _start_worker(spec: FoldTraining, images: torch.Tensor, targets: torch.Tensor, folds: np.ndarray,
                  threads: int) -> None:
    from imgclf.console import show_progress

    torch.set_num_threads(threads)
    show_progress(False)   # several folds at once: their bars would overwrite each other
    _SHARED.update(spec=spec, images=images, targets=targets, folds=folds)


def _fit_shared_fold(fold: int) -> FoldResult:
    s = _SHARED
    return fit_fold(s["spec"], s["images"], s["targets"], s["folds"], fold)  # type: ignore[arg-type]


def out_of_fold_probs(spec: FoldTraining, images: torch.Tensor, targets: torch.Tensor, folds: np.ndarray, jobs: int,
                      on_done: Callable[[FoldResult], None] | None = None) -> tuple[np.ndarray, list[FoldResult]]:
    """((N, K) out-of-fold probabilities, one result per fold); ``jobs`` > 1 trains folds in parallel processes."""
    num_folds = int(folds.max()) + 1
    results: list[FoldResult] = []
    if jobs <= 1:
        for fold in range(num_folds):
            results.append(fit_fold(spec, images, targets, folds, fold))
            if on_done is not None:
                on_done(results[-1])
    else:
        images.share_memory_()
        threads = max(1, available_cores() // jobs)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker,
                                 initargs=(spec, images, targets, folds, threads)) as pool:
            for result in pool.map(_fit_shared_fold, range(num_folds)):
                results.append(result)
                if on_done is not None:
                    on_done(result)
    probs = np.zeros((len(folds), spec.num_classes))
    for result in results:
        probs[result.holdout] = result.probs
    return probs, results


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
