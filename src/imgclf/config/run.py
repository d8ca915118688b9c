"""Configs of the commands that work on a run folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imgclf.config.fields import opt
from imgclf.config.shared import (Backend, Checkpoint, Device, Precision, backend_opt, batch_size_opt, checkpoint_opt,
                                  device_opt, precision_opt, trust_model_code_opt)

SPLITS = ("train", "val", "test")   # the splits imgclf prepare writes


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """Which weights of the run, and how to run them: shared by the commands that predict with a run."""

    checkpoint: Checkpoint = checkpoint_opt()
    batch_size: int = batch_size_opt()
    device: Device = device_opt()
    precision: Precision = precision_opt()
    backend: Backend = backend_opt()
    trust_model_code: bool = trust_model_code_opt()


@dataclass(frozen=True)
class EvaluateConfig(ModelOptions):
    """Accuracy, loss, per-class metrics, confusion matrix and predictions.csv of a run, one folder per evaluation."""

    run: Path = opt(help="run folder written by imgclf train", positional=True)
    data: Path | None = opt(None, "data folder (default: the run's own)", positional=True)
    split: str | None = opt(None, "which split of DATA to evaluate (default: val, and test next to it when DATA "
                                  "has one)")


@dataclass(frozen=True)
class CalibrateConfig:
    """Fit a temperature on held-out images so probabilities match observed accuracy; predict and evaluate use it."""

    run: Path = opt(help="run folder written by imgclf train", positional=True)
    data: Path | None = opt(None, "data folder (default: the run's own)", positional=True)
    split: str = opt("val", "labelled split to fit on: val, or a split kept apart for calibration")
    reset: bool = opt(False, "remove the temperature of --checkpoint instead (back to the uncalibrated "
                             "probabilities)", switch=True)
    checkpoint: Checkpoint = checkpoint_opt("best", "which weights to calibrate (the temperature is stored in them)")
    batch_size: int = batch_size_opt()
    device: Device = device_opt()
    precision: Precision = precision_opt()
    trust_model_code: bool = trust_model_code_opt()   # the logits come from PyTorch itself: no --backend


@dataclass(frozen=True)
class PredictConfig(ModelOptions):
    """Top-k classes with probabilities for image files or folders (RUN may be an export folder)."""

    run: Path = opt(help="run folder written by imgclf train, or an export folder written by imgclf export "
                         "(needs only onnxruntime, numpy and Pillow: pip install 'imgclf[infer]')", positional=True)
    paths: tuple[Path, ...] = opt(help="image files or folders", positional=True)
    topk: int = opt(3, "how many classes to list per image", min=1)
    tta: bool = opt(False, "average with the horizontally flipped image", switch=True)
    csv: Path | None = opt(None, "also write the predictions to this CSV file")
    json: bool = opt(False, "print JSON instead of a table", switch=True)
    force: bool = opt(False, "overwrite --csv if it exists", switch=True)


@dataclass(frozen=True)
class ExportConfig:
    """Export a run's model to ONNX or TorchScript (uint8 images in, probabilities out) with a JSON sidecar."""

    run: Path = opt(help="run folder written by imgclf train", positional=True)
    format: Literal["onnx", "torchscript"] = opt("onnx", "onnx (for onnxruntime, OpenVINO, TensorRT...) or "
                                                         "torchscript (for libtorch)")
    checkpoint: Checkpoint = checkpoint_opt(help="which weights to export")
    out: Path | None = opt(None, "export folder (default: RUN/export/<format>-<checkpoint>[-int8])")
    int8: bool = opt(False, "ONNX only: static int8 quantization calibrated on train images; reports the val "
                            "accuracy change", switch=True)
    data: Path | None = opt(None, "data folder for the parity check and calibration (default: the run's own)")
    check_images: int = opt(512, "val images compared between PyTorch and the export (0 = all)", min=0)
    calibration_images: int = opt(256, "--int8: train images used to calibrate the activation ranges", min=1)
    force: bool = opt(False, "replace an existing export folder", switch=True)
    trust_model_code: bool = trust_model_code_opt()

    def check(self) -> list[str]:
        return ["--int8: only with --format onnx"] if self.int8 and self.format != "onnx" else []


@dataclass(frozen=True)
class InspectConfig:
    """Model structure, parameters, optimizer state and resolved config of a run."""

    run: Path = opt(help="run folder written by imgclf train", positional=True)
    json: bool = opt(False, "print JSON instead of tables", switch=True)
    checkpoint: Checkpoint = checkpoint_opt("last", "which weights to describe")
    trust_model_code: bool = trust_model_code_opt()


@dataclass(frozen=True)
class MistakesConfig(ModelOptions):
    """Copy every misclassified image into mistakes/<true>/<predicted>/ beside the evaluation, and rank them."""

    run: Path = opt(help="run folder written by imgclf train", positional=True)
    data: Path | None = opt(None, "data folder (default: the run's own)", positional=True)
    split: str = opt("val", "which labelled split to mine")
    gallery: int = opt(36, "how many of the worst mistakes the gallery PNG shows", min=0)
    heatmaps: int = opt(48, "Grad-CAM heatmaps (predicted and true class) for the N worst mistakes; 0 = none", min=0)
    layer: str = opt("auto", "Grad-CAM layer (auto = the deepest spatial feature map; see imgclf explain --help)")


@dataclass(frozen=True)
class ExplainConfig:
    """Grad-CAM heatmaps: which part of each image drove the predicted class, and the true class where known."""

    run: Path = opt(help="run folder written by imgclf train", positional=True)
    images: tuple[Path, ...] = opt((), "image files or folders (default: the images of --split of --data)",
                                   positional=True)
    data: Path | None = opt(None, "data folder whose split is explained, and whose evaluation folder the "
                                  "results go beside (default: the run's own)")
    split: str | None = opt(None, "which labelled split to explain when no IMAGES are given (default: val)")
    limit: int = opt(64, "explain at most N images (0 = all)", min=0)
    layer: str = opt("auto", "module whose activations Grad-CAM weighs (auto = the deepest spatial feature map "
                             "after the last convolution; names as imgclf inspect RUN lists them)")
    gallery: int = opt(24, "how many images the gallery PNG shows", min=0)
    checkpoint: Checkpoint = checkpoint_opt()
    batch_size: int = batch_size_opt(32, "images per forward and backward pass (Grad-CAM runs in fp32)")
    device: Device = device_opt()
    trust_model_code: bool = trust_model_code_opt()

    def check(self) -> list[str]:
        if self.images and (self.split is not None or self.data is not None):
            return ["--data/--split: not used with IMAGES (their class is their folder's name); leave them out"]
        return []


@dataclass(frozen=True)
class EnhanceConfig(ModelOptions):
    """Re-predict images under intensity enhancements: which rescue mistakes, which break correct ones."""

    run: Path = opt(help="run folder written by imgclf train", positional=True)
    images: Path | None = opt(None, "a folder of images to use instead of --on", positional=True)
    on: str = opt("mistakes", "mistakes (those imgclf mistakes found with the same --data/--split/--checkpoint), "
                              "a split name (all of its images), or a folder path")
    data: Path | None = opt(None, "data folder whose split is tested, and whose evaluation folder the results go "
                                  "beside (default: the run's own)")
    split: str | None = opt(None, "the split whose mistakes --on mistakes reads (default: val; --on <split> sets it)")
    transforms: tuple[str, ...] = opt((), "which enhancements (default: all registered)")
    set: tuple[str, ...] = opt((), "parameters, e.g. gamma.g=0.5 or a sweep gamma.g=0.4,0.7,1.5",
                               metavar="NAME.PARAM=V[,V...]")
    color: Literal["luma", "channels"] = opt("luma", "enhance colour images on luminance or per channel")
    figures: int = opt(20, "per-image figures for N images where an enhancement changed the outcome: rescued "
                           "mistakes first, then broken correct images, then the worst mistakes", min=0)

    def check(self) -> list[str]:
        problems = []
        if self.split is not None and self.on in SPLITS and self.split != self.on:
            problems.append(f"--split {self.split} and --on {self.on} name different splits; give one of them")
        if self.images is not None and (self.split is not None or self.data is not None):
            problems.append("--data/--split: not used with IMAGES (a folder is tested as it is); leave them out")
        return problems


@dataclass(frozen=True)
class ReportConfig:
    """One self-contained HTML page about a run."""

    run: Path = opt(help="run folder written by imgclf train", positional=True)


@dataclass(frozen=True)
class DemoConfig:
    """The whole pipeline on scikit-learn's bundled handwritten digits, no download."""

    out: Path = opt(Path("runs"), "folder under which the demo's data and run are created")
    epochs: int = opt(10, "training epochs", min=1)
    model: str = opt("auto", "model to train (auto: as imgclf train picks it)")
    img_size: int = opt(32, "training resolution in pixels", min=8, max=1024)
