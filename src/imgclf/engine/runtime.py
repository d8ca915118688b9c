"""Where and how tensors run: device, precision, memory layout, threads, seeds."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from imgclf.errors import ImgclfError

# bf16 pays off on CPUs with AMX tiles. With AVX512-BF16 alone, resnet18 trained at 55 img/s in
# bf16 against 75 img/s in fp32 on this project's 2-core machine (112 px, batch 64), so auto keeps fp32.
BF16_CPU_FLAGS = ("amx_bf16",)


@dataclass(frozen=True)
class Runtime:
    """The resolved device and numeric format of a run."""

    device: torch.device
    precision: str             # "fp32" | "bf16" | "fp16"
    channels_last: bool

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast for the forward pass (a no-op in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def describe(self) -> str:
        layout = ", channels_last" if self.channels_last else ""
        return f"{self.device.type} {self.precision}{layout}"


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True on CPUs with AMX bf16 tiles, where bf16 autocast is faster than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ImgclfError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return torch.device(name)


def resolve_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """auto precision = bf16 autocast where the hardware does bf16 fast (AMX, CUDA), else fp32.

    Convolution nets run channels_last everywhere: with oneDNN on the CPU it was faster in fp32 too.
    """
    dev = resolve_device(device)
    if precision == "auto":
        if dev.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        else:
            precision = "bf16" if cpu_supports_bf16() else "fp32"
    if precision == "fp16" and dev.type == "cpu":
        raise ImgclfError("--precision fp16 is for CUDA; on the CPU use bf16 or fp32")
    return Runtime(dev, precision, channels_last=True)


def configure_threads(processes_per_machine: int = 1) -> int:
    """One intra-op thread per core, shared between local processes; respects OMP_NUM_THREADS."""
    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // max(1, processes_per_machine))
    torch.set_num_threads(threads)
    return threads


SEED_STRIDES = {"epoch": 100_003, "step": 1_000_003}   # primes: (seed, index) pairs never collide in practice


def derived_seed(seed: int, per: str, index: int, offset: int = 0) -> int:
    """The seed of one epoch's (``per="epoch"``) or one step's randomness: a pure function of
    (seed, index), so a resumed run draws exactly the numbers of an uninterrupted one.
    ``offset`` keeps the streams apart (epoch order, balanced order, augmentation, dropout per rank)."""
    return seed * SEED_STRIDES[per] + index + offset


def seeded_generator(seed: int, per: str, index: int, offset: int = 0) -> torch.Generator:
    """A CPU generator seeded with :func:`derived_seed`."""
    return torch.Generator().manual_seed(derived_seed(seed, per, index, offset))


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
