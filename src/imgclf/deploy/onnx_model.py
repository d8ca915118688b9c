"""An exported ONNX classifier run by onnxruntime, on uint8 numpy batches. Imports no torch."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from imgclf.deploy.probabilities import logits_to_probs
from imgclf.errors import CheckpointError, ImgclfError

Preprocess = Callable[[np.ndarray], np.ndarray]   # uint8 (B, C, H, W) -> same
INSTALL_HINT = "install it with: pip install 'imgclf[infer]' (or pip install onnxruntime)"


def import_onnxruntime():  # noqa: ANN201 - the module
    try:
        import onnxruntime
    except ImportError:
        raise ImgclfError(f"onnxruntime is not installed; {INSTALL_HINT}") from None
    return onnxruntime


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class OnnxClassifier:
    """``predict_probs(uint8 (N, C, S, S)) -> (N, K)`` with an onnxruntime session on the CPU (or CUDA)."""

    def __init__(self, model_path: Path, output: str = "softmax", temperature: float = 1.0,
                 device: str = "cpu", threads: int = 0) -> None:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_cores()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=providers)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            raise CheckpointError(f"{model_path}: onnxruntime cannot load it ({first})") from None
        self.output, self.temperature = output, temperature
        self.path = Path(model_path)

    def run(self, images: np.ndarray, name: str) -> np.ndarray:
        """One forward pass; ``name`` is ``logits`` or ``probs``."""
        return self.session.run([name], {"images": np.ascontiguousarray(images, dtype=np.uint8)})[0]

    def predict_probs(self, images: np.ndarray, batch_size: int = 64, tta_flip: bool = False,
                      preprocess: Preprocess | None = None) -> np.ndarray:
        """(N, K) float32 probabilities of uint8 images (N, C, S, S), in batches of ``batch_size``."""
        images = np.asarray(images)
        parts = []
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size]
            if preprocess is not None:
                batch = preprocess(batch)
            if tta_flip:   # average the logits of the image and its mirror, as the torch backend does
                logits = (self.run(batch, "logits") + self.run(batch[..., ::-1], "logits")) / 2
                parts.append(logits_to_probs(logits, self.output, self.temperature))
            else:
                parts.append(self.run(batch, "probs").astype(np.float32))
        width = 2 if self.output == "sigmoid1" else self.session.get_outputs()[1].shape[1]
        return np.concatenate(parts) if parts else np.zeros((0, width if isinstance(width, int) else 0), np.float32)
