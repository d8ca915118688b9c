"""The JSON sidecar of an export folder: everything needed to predict with the exported model.

An export folder holds ``model.onnx`` (or ``model.pt`` for TorchScript) and ``imgclf-export.json``.
The model takes **uint8** images ``(B, C, S, S)`` (RGB or grey, already resized: shorter side to S,
centre crop) and does the normalisation itself; it returns ``logits`` ``(B, num_outputs)`` and
``probs`` ``(B, K)``. Only an optional ``--preprocess`` enhancement runs outside the model, on the
uint8 pixels. Reading a sidecar imports no torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclf.data.loading import GEOMETRY
from imgclf.errors import CheckpointError

SIDECAR_NAME = "imgclf-export.json"
FORMAT = "imgclf-export-1"
MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
OUTPUT_KINDS = ("softmax", "sigmoid1", "multilabel")


@dataclass(frozen=True)
class ExportInfo:
    """A validated sidecar; ``folder`` is where it was read from."""

    folder: Path
    runtime: str                     # onnx | torchscript
    precision: str                   # fp32 | int8
    classes: list[str]
    img_size: int
    channels: int
    mean: list[float]
    std: list[float]
    preprocess: str = "none"
    output: str = "softmax"
    temperature: float = 1.0
    threshold: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)   # source, parity, int8 report, versions

    @property
    def model_path(self) -> Path:
        return self.folder / MODEL_FILES[self.runtime]

    @property
    def num_outputs(self) -> int:
        return 1 if self.output == "sigmoid1" else len(self.classes)


def is_export_dir(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / SIDECAR_NAME).is_file()


def sidecar_dict(info: ExportInfo) -> dict[str, Any]:
    """The JSON written next to the model (input and output contract spelled out for other tools)."""
    return {
        "format": FORMAT, "runtime": info.runtime, "precision": info.precision,
        "model_file": MODEL_FILES[info.runtime],
        "input": {"name": "images", "dtype": "uint8", "layout": "NCHW", "shape": ["batch", info.channels,
                  info.img_size, info.img_size], "color": "rgb" if info.channels == 3 else "gray",
                  "resize": GEOMETRY.replace("S", "img_size"),
                  "normalization": "inside the model: x / 255, minus mean, divided by std"},
        "outputs": {"logits": ["batch", info.num_outputs], "probs": ["batch", len(info.classes)]},
        "classes": info.classes, "img_size": info.img_size, "channels": info.channels,
        "mean": info.mean, "std": info.std, "preprocess": info.preprocess, "output": info.output,
        "temperature": info.temperature, "threshold": info.threshold, **info.extra,
    }


def read_export(folder: Path) -> ExportInfo:
    """The sidecar of an export folder, checked; CheckpointError naming the file otherwise."""
    path = Path(folder) / SIDECAR_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot read the export description ({err})") from None
    problems = _problems(data) if isinstance(data, dict) else ["not a JSON object"]
    if problems:
        raise CheckpointError(f"{path}: not a usable imgclf export ({'; '.join(problems)})")
    known = {"format", "runtime", "precision", "model_file", "input", "outputs", "classes", "img_size",
             "channels", "mean", "std", "preprocess", "output", "temperature", "threshold"}
    info = ExportInfo(Path(folder), data["runtime"], data.get("precision", "fp32"), list(data["classes"]),
                      int(data["img_size"]), int(data["channels"]), [float(v) for v in data["mean"]],
                      [float(v) for v in data["std"]], str(data.get("preprocess", "none")),
                      str(data.get("output", "softmax")), float(data.get("temperature") or 1.0),
                      float(data.get("threshold", 0.5)), {k: v for k, v in data.items() if k not in known})
    if not info.model_path.is_file():
        raise CheckpointError(f"{info.model_path}: the exported model named by {path.name} is missing")
    return info


def _problems(data: dict[str, Any]) -> list[str]:
    problems = []
    if data.get("format") != FORMAT:
        problems.append(f"format {data.get('format')!r}, expected {FORMAT!r}")
    if data.get("runtime") not in MODEL_FILES:
        problems.append(f"runtime {data.get('runtime')!r} is not one of {', '.join(MODEL_FILES)}")
    classes = data.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        problems.append("'classes' is not a list of names")
    channels, size = data.get("channels"), data.get("img_size")
    if channels not in (1, 3):
        problems.append("'channels' must be 1 or 3")
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 4096:
        problems.append("'img_size' must be an integer in 8..4096")
    for key in ("mean", "std"):
        values = data.get(key)
        if (not isinstance(values, list) or len(values) != channels
                or not all(isinstance(v, (int, float)) and math.isfinite(v) and (key == "mean" or v > 0)
                           for v in values)):
            problems.append(f"'{key}' is not one finite number per channel")
    if data.get("output", "softmax") not in OUTPUT_KINDS:
        problems.append(f"'output' must be one of {', '.join(OUTPUT_KINDS)}")
    temperature = data.get("temperature") or 1.0
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        problems.append("'temperature' must be a positive number")
    return problems
