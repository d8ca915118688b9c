"""Options that several commands share, declared once (the same flag, help and checks everywhere)."""

from __future__ import annotations

from typing import Any, Literal

from imgclf.config.fields import opt

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Checkpoint = Literal["best", "last"]
Backend = Literal["auto", "torch", "onnxruntime"]

INFERENCE_BATCH_HELP = "images per forward pass (64 was fastest on a 2-core CPU; raise it on a GPU)"


def device_opt() -> Any:
    return opt("auto", "auto = cuda when available, else cpu", resumable=True)


def precision_opt() -> Any:
    return opt("auto", "auto = bf16 autocast where the hardware is fast at it (CUDA, AMX CPUs), else fp32")


def batch_size_opt(default: int = 64, help: str = INFERENCE_BATCH_HELP) -> Any:
    return opt(default, help, min=1)


def checkpoint_opt(default: str = "best", help: str = "which weights to use") -> Any:
    return opt(default, help)


def trust_model_code_opt() -> Any:
    return opt(False, "let a checkpoint that names a package.module:Class model import that module "
                      "(it runs that module's code: only for runs you trust)", switch=True)


def backend_opt() -> Any:
    return opt("auto", "inference engine: torch, onnxruntime (the run's ONNX export, made once per checkpoint), "
                       "or auto = the one measured faster on this machine (cached; jobs under 1,000 images stay "
                       "on torch until an export exists)")
