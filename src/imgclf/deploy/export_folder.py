"""Write an export folder (model file + sidecar) for a loaded checkpoint, checked before it appears.

Everything is written into a hidden temp folder beside the destination and renamed into place
only after the parity check passed (:func:`imgclf.io.atomic_dir`): a refused or crashed export
leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf import __version__
from imgclf.deploy.export import (EXPORTERS, ExportWrapper, Parity, batched, compare_probs, example_batch,
                                  load_runner, torch_probs)
from imgclf.deploy.sidecar import MODEL_FILES, SIDECAR_NAME, ExportInfo, sidecar_dict
from imgclf.engine.inference import LoadedModel
from imgclf.errors import ImgclfError
from imgclf.io import atomic_dir, write_json

INT8_MAX_DROP_POINTS = 1.0   # an int8 model whose val accuracy moves more than this is flagged loudly


class ParityError(ImgclfError):
    """The exported model does not compute what PyTorch computes; nothing was written."""


@dataclass
class ExportReport:
    folder: Path
    runtime: str
    exporter: str
    parity: Parity
    int8: dict[str, Any] | None = None
    size_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def make_wrapper(loaded: LoadedModel) -> ExportWrapper:
    """The graph to export: uint8 in, the run's normalisation, the folded model (CPU, fp32), probabilities out."""
    model = loaded.model.to("cpu").to(memory_format=torch.contiguous_format).float().eval()
    meta = loaded.meta
    return ExportWrapper(model, list(meta["mean"]), list(meta["std"]), loaded.output,
                         loaded.temperature).eval()


def prepare_images(loaded: LoadedModel, images: torch.Tensor | np.ndarray) -> np.ndarray:
    """uint8 (N, C, S, S) as numpy after the run's ``--preprocess`` (what the exported model receives)."""
    array = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    return np.asarray(loaded.preprocess_fn(array)) if loaded.preprocess_fn is not None else array


def write_export(loaded: LoadedModel, runtime: str, folder: Path, check_images: np.ndarray,
                 source: dict[str, Any], replace: bool = False, int8_calibration: np.ndarray | None = None,
                 int8_labels: np.ndarray | None = None) -> ExportReport:
    """Export, run ``check_images`` (uint8, preprocessed) through PyTorch and the export, refuse on disagreement.

    With ``int8_calibration`` (ONNX only) the written model is the int8 one; its accuracy on
    ``check_images`` with ``int8_labels`` is reported next to fp32's.
    """
    wrapper = make_wrapper(loaded)
    meta = loaded.meta
    with atomic_dir(folder, replace=replace) as tmp:
        path = tmp / MODEL_FILES[runtime]
        exporter = EXPORTERS[runtime](wrapper, example_batch(loaded.channels, loaded.img_size), path)
        reference = torch_probs(wrapper, check_images)
        exported = batched(load_runner(runtime, path, loaded.output), check_images)
        parity = compare_probs(reference, exported)
        if not parity.ok:
            raise ParityError(
                f"refusing the export: on {parity.num_images} images the {runtime} model agrees with PyTorch on "
                f"top-1 for {parity.top1_agreement:.2%} and its probabilities differ by up to "
                f"{parity.max_abs_prob_diff:.2e} (allowed: 100% and 1e-4); nothing was written")
        int8 = None
        if int8_calibration is not None:
            int8 = _quantize_in_place(path, loaded, int8_calibration, check_images, int8_labels, exported)
        info = ExportInfo(Path(folder), runtime, "int8" if int8 else "fp32", loaded.classes, loaded.img_size,
                          loaded.channels, list(meta["mean"]), list(meta["std"]), loaded.preprocess, loaded.output,
                          loaded.temperature, float(meta.get("threshold", 0.5)),
                          {"model": meta["model"], "source": source, "exporter": exporter,
                           "parity": parity.as_dict(), **({"int8": int8} if int8 else {}),
                           "versions": {"imgclf": __version__, "torch": torch.__version__}})
        write_json(tmp / SIDECAR_NAME, sidecar_dict(info))
        size = path.stat().st_size
    return ExportReport(Path(folder), runtime, exporter, parity, int8, size)


def _quantize_in_place(path: Path, loaded: LoadedModel, calibration: np.ndarray, images: np.ndarray,
                       labels: np.ndarray | None, fp32_probs: np.ndarray) -> dict[str, Any]:
    """Replace the fp32 ONNX file by its int8 version; returns the accuracy comparison."""
    from imgclf.deploy.quantize import quantize_onnx

    int8_path = path.with_name("model.int8.onnx")
    quantize_onnx(path, int8_path, calibration)
    int8_probs = batched(load_runner("onnx", int8_path, loaded.output), images)
    int8_path.replace(path)
    report: dict[str, Any] = {"calibration_images": int(len(calibration)), "check_images": int(len(images)),
                              "top1_agreement_with_fp32": float(np.mean(int8_probs.argmax(1) == fp32_probs.argmax(1)))}
    if labels is not None and loaded.output != "multilabel":
        fp32_acc = float(np.mean(fp32_probs.argmax(1) == labels))
        int8_acc = float(np.mean(int8_probs.argmax(1) == labels))
        drop = round(100 * (fp32_acc - int8_acc), 3)
        report.update(val_accuracy_fp32=fp32_acc, val_accuracy_int8=int8_acc, accuracy_drop_points=drop,
                      within_limit=abs(drop) <= INT8_MAX_DROP_POINTS)   # a gain this large is no copy either
    return report
