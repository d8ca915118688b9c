"""Export a trained model to ONNX or TorchScript, with a parity check against PyTorch.

The exported graph is :class:`ExportWrapper`: uint8 images ``(B, C, S, S)`` -> the run's own
normalisation (:func:`imgclf.data.transforms.to_float`) -> the BatchNorm-folded model ->
``logits`` and ``probs`` (:func:`imgclf.models.outputs.logits_to_probs`, after an optional temperature).
The batch dimension is dynamic. ONNX goes through ``torch.onnx.export``'s torch.export-based
exporter (needs ``onnxscript``), with the older TorchScript-based exporter as a fallback for
models torch.export cannot capture; the sidecar records which one was used.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imgclf.data.transforms import to_float
from imgclf.errors import ImgclfError
from imgclf.models.outputs import logits_to_probs

PROB_TOLERANCE = 1e-4     # max |p_exported - p_torch| accepted at export
ONNX_OPSET = 18


class ExportWrapper(nn.Module):
    """uint8 (B, C, S, S) -> (logits (B, num_outputs), probs (B, K)): what the export contains."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], output: str = "softmax",
                 temperature: float = 1.0) -> None:
        super().__init__()
        self.model, self.output, self.temperature = model.eval(), output, float(temperature)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # uint8 (B, C, S, S)
        logits = self.model(to_float(images, self.mean, self.std)).float()    # (B, num_outputs)
        scaled = logits / self.temperature if self.temperature != 1.0 else logits
        return logits, logits_to_probs(scaled, self.output)                   # (B, K)


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporters print progress to stdout and warn about their own deprecations: keep stdout for results."""
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def example_batch(channels: int, img_size: int) -> torch.Tensor:
    """Two images (a batch of 1 would let torch.export specialise the batch dimension)."""
    return torch.randint(0, 256, (2, channels, img_size, img_size), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


def _onnx_dynamo(wrapper: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.onnx.export(wrapper, (example,), str(path), dynamo=True, external_data=False, verbose=False,
                      opset_version=ONNX_OPSET, input_names=["images"], output_names=["logits", "probs"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},))


def _onnx_torchscript(wrapper: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.onnx.export(wrapper, (example,), str(path), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["logits", "probs"],
                      dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}, "probs": {0: "batch"}})


# tried in order; the first that works is used and named in the sidecar
ONNX_EXPORTERS: dict[str, Callable[[nn.Module, torch.Tensor, Path], None]] = {
    f"torch.onnx dynamo (torch.export), opset {ONNX_OPSET}": _onnx_dynamo,
    "torch.onnx TorchScript-based, opset 17": _onnx_torchscript,
}


def export_onnx(wrapper: nn.Module, example: torch.Tensor, path: Path) -> str:
    """Write ``path`` (one self-contained .onnx file); returns the exporter used."""
    failures = []
    for name, export in ONNX_EXPORTERS.items():
        try:
            with quiet_exporter(), torch.inference_mode(False), torch.no_grad():
                export(wrapper, example, path)
            return name
        except Exception as err:  # noqa: BLE001 - each exporter fails in its own way; try the next
            failures.append(f"{name}: {(str(err).strip().splitlines() or [type(err).__name__])[0][:200]}")
    raise ImgclfError("this model cannot be exported to ONNX: " + " | ".join(failures)
                      + " (install onnxscript for the first: pip install 'imgclf[export]')")


def export_torchscript(wrapper: nn.Module, example: torch.Tensor, path: Path) -> str:
    """Trace the wrapper and save it (TorchScript is deprecated in recent torch but still loads everywhere)."""
    try:
        with quiet_exporter(), torch.no_grad():
            torch.jit.save(torch.jit.trace(wrapper, example, check_trace=False), str(path))
    except Exception as err:  # noqa: BLE001
        raise ImgclfError(f"this model cannot be traced to TorchScript ({str(err).splitlines()[0][:200]})") from None
    return "torch.jit.trace"


EXPORTERS: dict[str, Callable[[nn.Module, torch.Tensor, Path], str]] = {
    "onnx": export_onnx,
    "torchscript": export_torchscript,
}


def load_runner(runtime: str, path: Path, output: str = "softmax",
                temperature: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
    """A function uint8 (B, C, S, S) numpy -> (B, K) probabilities running the exported file."""
    if runtime == "onnx":
        from imgclf.deploy.onnx_model import OnnxClassifier

        classifier = OnnxClassifier(path, output, temperature)
        return lambda images: classifier.run(images, "probs")
    with quiet_exporter():
        module = torch.jit.load(str(path), map_location="cpu")   # the file written just before by us

    def run(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(images)))[1].numpy()
    return run


@dataclass(frozen=True)
class Parity:
    """How the exported model's probabilities compare to PyTorch's on the same images."""

    num_images: int
    top1_agreement: float       # fraction of images with the same argmax
    max_abs_prob_diff: float

    @property
    def ok(self) -> bool:
        return self.top1_agreement == 1.0 and self.max_abs_prob_diff <= PROB_TOLERANCE

    def as_dict(self) -> dict[str, float | int]:
        return {"images": self.num_images, "top1_agreement": self.top1_agreement,
                "max_abs_prob_diff": float(f"{self.max_abs_prob_diff:.3g}"), "tolerance": PROB_TOLERANCE}


def batched(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate([run(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def compare_probs(reference: np.ndarray, candidate: np.ndarray) -> Parity:
    """(N, K) probabilities of PyTorch and of the export -> agreement and largest difference."""
    if reference.shape != candidate.shape:
        raise ImgclfError(f"the exported model returns {candidate.shape[1:]} per image, PyTorch {reference.shape[1:]}")
    agree = float(np.mean(reference.argmax(1) == candidate.argmax(1))) if len(reference) else 1.0
    diff = float(np.max(np.abs(reference.astype(np.float64) - candidate))) if len(reference) else 0.0
    return Parity(len(reference), agree, diff)


def torch_probs(wrapper: nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """PyTorch's (N, K) probabilities of the wrapper in fp32 eager mode: the reference of the check."""
    with torch.inference_mode():
        return batched(lambda b: wrapper(torch.from_numpy(np.ascontiguousarray(b)))[1].numpy(), images, batch_size)
