"""This machine: its CPU, and a small JSON cache of what was measured on it.

Choices that depend on the hardware (bf16 or fp32, compile or not, which inference backend)
are made by short timed probes, not by CPU names. A probe's verdict is kept in
``$XDG_CACHE_HOME/imgclf/<name>.json`` (default ``~/.cache/imgclf``) under a key that names
the CPU, its relevant flags, the library versions and the workload, so the next run on the
same machine skips the probe and a different machine measures afresh.
"""

from __future__ import annotations

import json
import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

from imgclf.console import warn
from imgclf.errors import ImgclfError
from imgclf.io import write_json

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "neon", "sve")   # the ones that matter


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, tuple[str, ...]]:
    """(model name, the relevant instruction-set flags present) from /proc/cpuinfo."""
    name, flags = platform.processor() or platform.machine(), ""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return name, ()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name in ("", platform.machine(), platform.processor()):
            name = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = value
    present = set(flags.split())
    return name, tuple(f for f in CPU_FLAGS if f in present)


def describe_cpu() -> str:
    """'AMD EPYC (2 cores; avx2)': what benchmark tables and probe keys name."""
    name, flags = cpu_info()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name} ({cores} cores; {', '.join(flags) or 'no avx2/avx512/amx'})"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imgclf"


def read_verdicts(name: str) -> dict[str, Any]:
    """Every verdict stored under ``name`` (an unreadable or corrupt file counts as empty)."""
    try:
        data = json.loads((cache_dir() / f"{name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember_verdict(name: str, key: str, verdict: dict[str, Any]) -> None:
    """Store one verdict (atomically; a read-only home only costs a warning)."""
    try:
        write_json(cache_dir() / f"{name}.json", {**read_verdicts(name), key: verdict})
    except ImgclfError as err:
        warn(f"cannot keep the measurement for later runs ({err})")
