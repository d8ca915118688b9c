"""Batched inference over a source: probabilities for every image exactly once, in order."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from imgclf.data.sources import BatchSource
from imgclf.data.transforms import Preprocess, to_float
from imgclf.engine.distributed import SINGLE, Dist, eval_shard, gather_rows
from imgclf.engine.runtime import Runtime


@dataclass(frozen=True)
class EvalResult:
    probs: torch.Tensor      # (N, K) float32 on the CPU
    targets: torch.Tensor    # (N,) int64
    loss: float              # mean cross-entropy (no smoothing)
    accuracy: float

    @property
    def num_images(self) -> int:
        return int(self.targets.shape[0])


@torch.inference_mode()
def predict_batches(model: nn.Module, source: BatchSource, runtime: Runtime, mean: torch.Tensor,
                    std: torch.Tensor, batch_size: int = 256, max_batches: int = 0,
                    preprocess: Preprocess | None = None, tta_flip: bool = False,
                    indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(probs (N, K) float32 CPU, targets (N,)) in source order (or of ``indices``); ``max_batches`` > 0 stops early."""
    model.eval()
    order = torch.arange(source.num_images) if indices is None else indices
    probs, targets = [], []
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
        probs.append(torch.softmax(logits, dim=1).cpu())
        targets.append(batch_targets)
    if not probs:   # an empty shard
        return torch.zeros((0, num_outputs(model))), torch.zeros(0, dtype=torch.long)
    return torch.cat(probs), torch.cat(targets)


def num_outputs(model: nn.Module) -> int:
    from imgclf.models.registry import find_head

    return find_head(model)[2].out_features


def evaluate(model: nn.Module, source: BatchSource, runtime: Runtime, mean: torch.Tensor, std: torch.Tensor,
             batch_size: int = 256, max_batches: int = 0, preprocess: Preprocess | None = None,
             ctx: Dist = SINGLE) -> EvalResult:
    """Loss and accuracy over the source (all of it unless ``max_batches``).

    Under DDP each rank predicts a disjoint slice and the results are gathered, so every
    image counts exactly once and every rank gets the same numbers.
    """
    shard = eval_shard(source.num_images, ctx) if ctx.enabled else None
    probs, targets = predict_batches(model, source, runtime, mean, std, batch_size, max_batches, preprocess,
                                     indices=shard)
    probs, targets = gather_rows(ctx, probs), gather_rows(ctx, targets)
    picked = probs[torch.arange(len(targets)), targets].clamp_min(1e-12)
    loss = float(-picked.log().mean())
    accuracy = float((probs.argmax(1) == targets).float().mean())
    return EvalResult(probs, targets, loss, accuracy)
