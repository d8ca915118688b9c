"""``--compile auto``: compile the training step only where compiling pays back within the run.

Whether ``torch.compile`` helps depends on the machine (on some CPUs the compiled step is slower
than oneDNN's eager kernels; on GPUs it usually fuses well) and costs a compile of tens of seconds
each run. So it is measured, not assumed: compile a fresh copy of the model, time its first step
(the compile) and a few steady steps against eager steps of another copy, and compile the run
only when ``(eager - compiled step) x steps > compile time``. The probe itself costs about one
compile, so a workload is probed only when its run is long enough for that to be small
(``PROBE_MIN_RUN_S``); the verdict is cached per machine and workload (:mod:`imgclf.machine`),
and later runs of any length decide from it without measuring. A shorter run only times eager
steps, to know it is short; that time is kept too, so the next short run measures nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from imgclf.engine.precision import time_steps
from imgclf.machine import read_verdicts, remember_verdict

CACHE = "compile"
ROUNDS = 4                 # steady steps timed per variant (the fastest counts)
PROBE_MIN_RUN_S = 600.0    # an unmeasured workload is probed only for runs expected to train this long


@dataclass(frozen=True)
class CompileVerdict:
    compile_s: float          # the first compiled step, less an eager step: what compiling costs
    eager_step_s: float
    compiled_step_s: float
    cached: bool = False

    def saved_s(self, steps: int) -> float:
        """Seconds the run would save by compiling (negative: it would lose)."""
        return (self.eager_step_s - self.compiled_step_s) * steps - self.compile_s


@dataclass(frozen=True)
class CompileDecision:
    compile: bool
    reason: str


def measure_compile(make_model: Callable[[], nn.Module], images: torch.Tensor, targets: torch.Tensor,
                    dtype: torch.dtype | None) -> CompileVerdict:
    """Eager steps, then a compiled copy's first step and steady steps, then eager again (interleaved)."""
    device = images.device.type
    eager = make_model().to(images.device, memory_format=torch.channels_last).train()
    eager_s = time_steps(eager, images, targets, dtype, ROUNDS + 1, device)[1:]
    compiled = torch.compile(make_model().to(images.device, memory_format=torch.channels_last).train())
    first, *steady = time_steps(compiled, images, targets, dtype, ROUNDS + 1, device)
    eager_s += time_steps(eager, images, targets, dtype, ROUNDS, device)
    step = min(eager_s)
    return CompileVerdict(round(max(first - step, 0.0), 3), round(step, 5), round(min(steady), 5))


def _eager_step(saved: dict) -> float | None:
    """The eager step time a short run stored earlier (no compile measured yet), if usable."""
    try:
        step = float(saved["eager_step_s"])
    except (KeyError, TypeError, ValueError):
        return None
    return step if step > 0 else None


def decide_compile(make_model: Callable[[], nn.Module], key: str, images: torch.Tensor, targets: torch.Tensor,
                   dtype: torch.dtype | None, steps: int) -> CompileDecision:
    """Compile or not for a run of ``steps`` steps of the workload ``key`` names (a batch of its shape:
    ``images``, ``targets``; autocast ``dtype`` or None)."""
    saved = read_verdicts(CACHE).get(key)
    saved = saved if isinstance(saved, dict) else {}
    if {"compile_s", "eager_step_s", "compiled_step_s"} <= saved.keys():
        verdict = CompileVerdict(float(saved["compile_s"]), float(saved["eager_step_s"]),
                                 float(saved["compiled_step_s"]), cached=True)
    else:
        step = _eager_step(saved)
        if step is None:   # timed once per workload: a fresh model's first steps cost a small run ~0.1-1 s
            eager = make_model().to(images.device, memory_format=torch.channels_last).train()
            step = min(time_steps(eager, images, targets, dtype, 3, images.device.type)[1:])
            remember_verdict(CACHE, key, {"eager_step_s": round(step, 5)})
        if step * steps < PROBE_MIN_RUN_S:
            return CompileDecision(False, f"compile off: about {step * steps:.0f} s of training steps, too few to "
                                          f"pay back a compile (measured only for runs over {PROBE_MIN_RUN_S:.0f} s)")
        verdict = measure_compile(make_model, images, targets, dtype)
        remember_verdict(CACHE, key, {"compile_s": verdict.compile_s, "eager_step_s": verdict.eager_step_s,
                                      "compiled_step_s": verdict.compiled_step_s})
    saved_s = verdict.saved_s(steps)
    source = "measured earlier on this machine" if verdict.cached else "measured now"
    facts = (f"a compiled step takes {verdict.compiled_step_s * 1e3:.0f} vs {verdict.eager_step_s * 1e3:.0f} ms "
             f"eager, compiling {verdict.compile_s:.0f} s, {source}")
    if saved_s > 0:
        return CompileDecision(True, f"compile on: saves about {saved_s:.0f} s over {steps} steps ({facts})")
    return CompileDecision(False, f"compile off: would not pay back within {steps} steps ({facts})")
