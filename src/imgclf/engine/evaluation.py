"""Batched inference over a source: probabilities for every image exactly once, in order."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from imgclf.data.sources import BatchSource
from imgclf.data.transforms import Preprocess, to_float
from imgclf.engine.distributed import SINGLE, Dist, eval_shard, gather_rows
from imgclf.engine.runtime import Runtime
from imgclf.models.outputs import logits_to_probs


TRIM_GROWTH = 32 << 20    # resident growth over an evaluation pass that returns freed heap memory to the system


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def resident_bytes() -> int:
    """This process's resident memory (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def release_freed_memory() -> None:
    """Give the heap's freed pages back to the system.

    Large batches freed by the loop while the next one is already read fragment glibc's heap: without
    this the process grew by about one batch per batch over an evaluation pass (at 112 px, batch
    256: 0.5 GB over 17,000 images) and gave it back only at the end. Trimming costs the page faults
    of reusing that memory, so it happens only once the process has grown by TRIM_GROWTH (32 MB, a
    few batches: at 128 MB a streaming run's main process still peaked 157 MB higher at 100k images
    than at 1k; at 32 MB the whole tree's peak no longer grows with N)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@dataclass(frozen=True)
class EvalResult:
    probs: torch.Tensor      # (N, K) float32 on the CPU
    targets: torch.Tensor    # (N,) int64, or (N, K) 0/1 for multi-label
    loss: float              # mean cross-entropy (no smoothing); multi-label: mean BCE
    accuracy: float          # multi-label: per-label accuracy at the threshold
    extra: dict[str, float] = field(default_factory=dict)   # more val_* metrics (multi-label: mAP, ...)

    @property
    def num_images(self) -> int:
        return int(self.targets.shape[0])


@torch.inference_mode()
def predict_logits(model: nn.Module, source: BatchSource, runtime: Runtime, mean: torch.Tensor,
                   std: torch.Tensor, batch_size: int = 256, max_batches: int = 0,
                   preprocess: Preprocess | None = None, tta_flip: bool = False,
                   indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, num_outputs) float32 CPU, targets) in source order (or of ``indices``); ``max_batches`` > 0 stops early."""
    model.eval()
    order = torch.arange(source.num_images) if indices is None else indices
    logits_parts, targets = [], []
    resident = resident_bytes()
    for i, (images, batch_targets) in enumerate(source.batches(order, batch_size)):
        if max_batches and i >= max_batches:
            break
        images = images.to(runtime.device, non_blocking=True)
        if preprocess is not None:
            images = preprocess(images)
        x = to_float(images, mean, std, runtime.channels_last)
        with runtime.autocast():
            logits = model(x).float()
            if tta_flip:
                logits = (logits + model(x.flip(3)).float()) / 2
        logits_parts.append(logits.cpu())
        targets.append(batch_targets)
        if resident and resident_bytes() - resident > TRIM_GROWTH:
            release_freed_memory()
            resident = resident_bytes()
    if not logits_parts:   # an empty shard
        return torch.zeros((0, num_outputs(model))), torch.zeros(0, dtype=torch.long)
    return torch.cat(logits_parts), torch.cat(targets)


def predict_batches(model: nn.Module, source: BatchSource, runtime: Runtime, mean: torch.Tensor,
                    std: torch.Tensor, batch_size: int = 256, max_batches: int = 0,
                    preprocess: Preprocess | None = None, tta_flip: bool = False,
                    indices: torch.Tensor | None = None, output: str = "softmax",
                    temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(probs (N, K) float32 CPU, targets (N,)) in source order (or of ``indices``); ``max_batches`` > 0 stops early.

    ``temperature`` divides the logits before the output's link function (calibration).
    """
    logits, targets = predict_logits(model, source, runtime, mean, std, batch_size, max_batches, preprocess,
                                     tta_flip, indices)
    if not len(logits):   # an empty shard
        width = 2 if output == "sigmoid1" else logits.shape[1]
        return torch.zeros((0, width)), (torch.zeros((0, width)) if output == "multilabel"
                                          else torch.zeros(0, dtype=torch.long))
    return logits_to_probs(logits, output, temperature), targets


def num_outputs(model: nn.Module) -> int:
    from imgclf.models.registry import find_head

    return find_head(model)[2].out_features


def evaluate(model: nn.Module, source: BatchSource, runtime: Runtime, mean: torch.Tensor, std: torch.Tensor,
             batch_size: int = 256, max_batches: int = 0, preprocess: Preprocess | None = None,
             ctx: Dist = SINGLE, output: str = "softmax", threshold: float = 0.5) -> EvalResult:
    """Loss and accuracy over the source (all of it unless ``max_batches``).

    Under DDP each rank predicts a disjoint slice and the results are gathered, so every
    image counts exactly once and every rank gets the same numbers.
    """
    shard = eval_shard(source.num_images, ctx) if ctx.enabled else None
    probs, targets = predict_batches(model, source, runtime, mean, std, batch_size, max_batches, preprocess,
                                     indices=shard, output=output)
    probs, targets = gather_rows(ctx, probs), gather_rows(ctx, targets)
    from imgclf.analysis.metrics import accuracy, mean_loss, multilabel_scores

    if output == "multilabel":
        scores = multilabel_scores(probs.numpy(), targets.numpy(), threshold)
        extra = {k: v for k, v in scores.items() if k not in ("val_loss", "val_acc")}
        return EvalResult(probs, targets, scores["val_loss"], scores["val_acc"], extra)
    t, p = targets.numpy(), probs.numpy()
    return EvalResult(probs, targets, mean_loss(t, p), accuracy(t, p))
