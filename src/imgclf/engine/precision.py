"""``--precision auto`` on a CPU: bf16 or fp32, whichever trains this model faster here.

Whether bf16 autocast pays off depends on the CPU (AMX tiles: often 2-4x faster; AVX512-BF16
alone or AVX2: usually slower) and on the model, so it is measured, not guessed from a CPU
name: a few training steps of the real model at the run's batch and input size in each
precision, interleaved so that a burst of other load hits both alike, the fastest step of each
compared. bf16 must be clearly faster (``MIN_GAIN``) to be chosen, since fp32 is the more
exact of the two. The verdict is cached per machine, library version and workload
(:mod:`imgclf.machine`), so only the first run on a machine pays the few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from imgclf.machine import describe_cpu, read_verdicts, remember_verdict

CACHE = "precision"
MIN_GAIN = 0.9        # bf16 is picked when its step takes at most 0.9x the fp32 step
ROUNDS = 3            # timed steps per precision, after one warm-up step each
HOPELESS = 3.0        # a first bf16 step this many times slower than fp32 ends the probe early


@dataclass(frozen=True)
class PrecisionVerdict:
    precision: str        # "fp32" | "bf16"
    fp32_step_s: float
    bf16_step_s: float
    cached: bool = False

    def reason(self) -> str:
        ratio = self.bf16_step_s / self.fp32_step_s if self.fp32_step_s else float("nan")
        # (when the probe stopped early, bf16_step_s is its first step: an upper bound, still far slower)
        source = "measured earlier on this machine" if self.cached else "measured now"
        return (f"{self.precision}: a bf16 training step takes {ratio:.2f}x the fp32 step "
                f"({self.bf16_step_s * 1e3:.0f} vs {self.fp32_step_s * 1e3:.0f} ms, {source})")


def probe_key(model_name: str, channels: int, img_size: int, batch_size: int) -> str:
    return f"{describe_cpu()} | torch {torch.__version__} | {model_name} {channels}x{img_size} | batch {batch_size}"


def time_steps(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype | None,
               rounds: int, device_type: str = "cpu") -> list[float]:
    """Seconds of each of ``rounds`` forward + backward + SGD steps (the first pays one-time set-up)."""
    from imgclf.training.optim import SGD

    optimizer = SGD(model.parameters(), lr=1e-4, momentum=0.9)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            loss = nn.functional.cross_entropy(model(images).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device_type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def measure_precision(make_model: Callable[[], nn.Module], channels: int, img_size: int,
                      batch_size: int) -> PrecisionVerdict:
    """Time fp32 and bf16 steps of fresh copies of the model on random data (channels_last, CPU).

    Order: fp32 (warm-up + ROUNDS), bf16 warm-up, and only when that first bf16 step is not already
    ``HOPELESS`` x slower than a steady fp32 step (CPUs without bf16 instructions emulate it, often
    10x slower), ROUNDS bf16 steps and ROUNDS more fp32 steps; the fastest step of each is compared.
    """
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, channels, img_size, img_size, generator=generator)
    images = images.contiguous(memory_format=torch.channels_last)
    models = {name: make_model().to(memory_format=torch.channels_last).train() for name in ("fp32", "bf16")}
    with torch.no_grad():
        num_outputs = models["fp32"].eval()(images[:2]).shape[1]
    targets = torch.randint(0, num_outputs, (batch_size,), generator=generator)
    fp32 = min(time_steps(models["fp32"].train(), images, targets, None, ROUNDS + 1)[1:])
    bf16_first = time_steps(models["bf16"], images, targets, torch.bfloat16, 1)[0]
    if bf16_first > HOPELESS * fp32:
        return PrecisionVerdict("fp32", round(fp32, 4), round(bf16_first, 4))
    bf16 = min(time_steps(models["bf16"], images, targets, torch.bfloat16, ROUNDS))
    fp32 = min(fp32, *time_steps(models["fp32"], images, targets, None, ROUNDS))   # interleaved: fp32, bf16, fp32
    return PrecisionVerdict("bf16" if bf16 <= MIN_GAIN * fp32 else "fp32", round(fp32, 4), round(bf16, 4))


def probe_precision(make_model: Callable[[], nn.Module], model_name: str, channels: int, img_size: int,
                    batch_size: int) -> PrecisionVerdict:
    """The cached verdict for this machine and workload, or a new measurement (then cached)."""
    key = probe_key(model_name, channels, img_size, batch_size)
    saved = read_verdicts(CACHE).get(key)
    if isinstance(saved, dict) and saved.get("precision") in ("fp32", "bf16"):
        return PrecisionVerdict(saved["precision"], float(saved["fp32_step_s"]), float(saved["bf16_step_s"]),
                                cached=True)
    verdict = measure_precision(make_model, channels, img_size, batch_size)
    remember_verdict(CACHE, key, {"precision": verdict.precision, "fp32_step_s": verdict.fp32_step_s,
                                  "bf16_step_s": verdict.bf16_step_s})
    return verdict
