"""Multi-process training on PyTorch's own engine (torchrun + DistributedDataParallel).

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK; we join the process group
(NCCL on CUDA, gloo on CPU), shard every global batch across ranks, gather
evaluation results so each val image counts exactly once, and let rank 0 alone
write files while the others wait on a barrier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Dist()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device_type: str) -> Dist:
    """Join the process group torchrun prepared; a no-op (SINGLE) in a plain process."""
    if not launched_by_torchrun():
        return SINGLE
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    ctx = Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device_type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    return ctx


def shutdown(ctx: Dist) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Dist) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_object(ctx: Dist, obj: Any) -> Any:
    """Rank 0's value of ``obj`` on every rank (decisions are made once, by rank 0)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_buffers(ctx: Dist, module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running stats) so evaluation matches the saved weights."""
    if ctx.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def shard_batch(indices: torch.Tensor, batch_size: int, ctx: Dist) -> torch.Tensor:
    """This rank's part of one global batch of ``batch_size * world_size`` indices."""
    return indices[ctx.rank * batch_size:(ctx.rank + 1) * batch_size]


def eval_shard(num_images: int, ctx: Dist) -> torch.Tensor:
    """A contiguous, disjoint slice of 0..N-1 per rank; together they cover every image once."""
    per_rank = -(-num_images // ctx.world_size)
    return torch.arange(ctx.rank * per_rank, min(num_images, (ctx.rank + 1) * per_rank))


def gather_rows(ctx: Dist, rows: torch.Tensor) -> torch.Tensor:
    """Concatenate each rank's (n_r, ...) rows in rank order (sizes may differ; no padding kept)."""
    if not ctx.enabled:
        return rows
    device = torch.device("cuda", ctx.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    local = rows.to(device)
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], device=device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[:local.shape[0]] = local
    parts = [torch.zeros_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:int(s.item())] for p, s in zip(parts, sizes)]).to(rows.device)


def all_reduce_mean(ctx: Dist, value: torch.Tensor) -> torch.Tensor:
    if ctx.enabled:
        value = value.clone()
        dist.all_reduce(value)
        value /= ctx.world_size
    return value
