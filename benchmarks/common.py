"""Shared helpers of the benchmarks: the work folder, the digits data, the machine, timing.

Everything the benchmarks write goes under WORK (``benchmarks/.work/`` unless the
environment variable ``IMGCLF_BENCH_WORK`` names another folder); it is git-ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = Path(os.environ.get("IMGCLF_BENCH_WORK", HERE / ".work"))
PYTHON = sys.executable


def digits_data(per_class: int = 0) -> Path:
    """scikit-learn's 1,797 real 8x8 digit scans, prepared by ``imgclf prepare`` (cached).

    ``per_class`` > 0 keeps only the first N images of each digit (for --quick runs).
    Returns DATA with DATA/{train,val}/<digit>/*.png (val 20%, split seed 0).
    """
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    import imgclf

    name = f"digits-{per_class}" if per_class else "digits"
    data = WORK / "data" / name
    if (data / "manifest.csv").is_file():
        return data
    raw = WORK / "raw" / name
    shutil.rmtree(raw, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)
    digits = load_digits()
    seen: dict[int, int] = {}
    for n, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        seen[int(label)] = seen.get(int(label), 0) + 1
        if per_class and seen[int(label)] > per_class:
            continue
        folder = raw / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        img = np.clip(pixels * 255.0 / 16.0 + 0.5, 0, 255).astype(np.uint8)  # 0..16 -> 0..255
        Image.fromarray(img).save(folder / f"digit_{n:04d}.png")
    data.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(sys.stderr):   # keep stdout for the benchmark's JSON
        imgclf.prepare(raw, data, val=0.2, seed=0)
    return data


def count_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def machine() -> dict[str, Any]:
    """CPU model, cores, library versions and the precision imgclf picks here."""
    import torch

    from imgclf.engine.runtime import resolve_runtime

    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        cpu = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), cpu)
        flags = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    from imgclf.machine import describe_cpu

    return {"cpu": describe_cpu(), "cpu_model": cpu, "cores": cores, "gpu": gpu, "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads_default": torch.get_num_threads(),
            "bf16_cpu_flags": [f for f in ("avx512_bf16", "amx_bf16") if f in flags.split()],
            "imgclf_runtime": resolve_runtime("auto", "auto").describe(),
            "load_avg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def median(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def mean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.fmean(values), 5) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def show_cmd(argv: Sequence[str]) -> str:
    """A command as a person would type it (``python -m imgclf`` shown as ``imgclf``)."""
    argv = [str(a) for a in argv]
    if argv[:3] == [PYTHON, "-m", "imgclf"]:
        argv = ["imgclf", *argv[3:]]
    elif argv and argv[0] == PYTHON:
        argv = ["python", *argv[1:]]
    return shlex.join(os.path.relpath(a, REPO) if a.startswith(str(REPO) + os.sep) else a for a in argv)


def run_timed(argv: Sequence[str], log: Path | None = None) -> tuple[float, float, str]:
    """Run a command; (launch time.time(), whole-process wall seconds, stdout). Raises on failure."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    launched = time.time()
    start = time.perf_counter()
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - start
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {show_cmd(argv)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}", encoding="utf-8")
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{show_cmd(argv)} exited with {proc.returncode}:\n{tail}")
    return launched, wall, proc.stdout


def last_json(stdout: str) -> dict[str, Any]:
    """The JSON object a benchmark script prints last on stdout."""
    start = stdout.rfind("\n{")
    return json.loads(stdout[start + 1 if start >= 0 else 0:])


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def model_only_throughput(img_size: int, batch_size: int, num_classes: int = 10, steps: int = 20,
                          warmup: int = 5, precision: str = "auto", channels_last: bool | None = None,
                          model_name: str = "resnet18") -> dict[str, Any]:
    """Images/s of the model's forward + backward + SGD step on synthetic tensors already in memory.

    Same model, precision and memory layout as ``imgclf train`` picks on this machine
    (``resolve_runtime("auto", precision)``) and the same thread setting (``configure_threads``).
    ``channels_last`` overrides the layout that precision implies (to separate the two effects).
    """
    import dataclasses

    import torch

    from imgclf.engine.runtime import configure_threads, resolve_runtime
    from imgclf.models.registry import create_model

    threads = configure_threads()
    runtime = resolve_runtime("auto", precision)
    if channels_last is not None:
        runtime = dataclasses.replace(runtime, channels_last=channels_last)
    torch.manual_seed(0)
    model = create_model(model_name, num_classes, 3).to(runtime.device)
    fmt = torch.channels_last if runtime.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(batch_size, 3, img_size, img_size, device=runtime.device).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch_size,), device=runtime.device)

    def step() -> None:
        with runtime.autocast():
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return {"model": model_name, "img_per_s": round(steps * batch_size / elapsed, 1), "steps_timed": steps,
            "warmup_steps": warmup,
            "runtime": runtime.describe(), "threads": threads, "img_size": img_size, "batch_size": batch_size}
