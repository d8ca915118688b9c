"""Static int8 quantization of an exported ONNX model with onnxruntime's own tooling.

Weights int8 per channel, activations uint8, QDQ format, ranges calibrated (min/max) on real
training images. The probability head (Softmax / Sigmoid) stays in float so probabilities keep
their resolution. Only the operators below are quantized.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgclf.deploy.onnx_model import import_onnxruntime

QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "Add", "Mul", "Relu", "Clip", "MaxPool", "AveragePool",
                 "GlobalAveragePool", "Flatten", "Reshape", "Concat"]
CALIBRATION_BATCH = 16


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over a uint8 (N, C, S, S) array."""

    def __init__(self, images: np.ndarray, batch_size: int) -> None:
        self.batches = iter([np.ascontiguousarray(images[i:i + batch_size])
                             for i in range(0, len(images), batch_size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"images": batch}


def quantize_onnx(source: Path, destination: Path, calibration_images: np.ndarray) -> None:
    """Write an int8 copy of ``source`` calibrated on uint8 images (N, C, S, S) (already preprocessed)."""
    import_onnxruntime()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader = type("Reader", (_Batches, CalibrationDataReader), {})(calibration_images, CALIBRATION_BATCH)
    prepared = destination.with_name(destination.stem + ".prepared.onnx")
    try:
        quant_pre_process(str(source), str(prepared))
        quantize_static(str(prepared), str(destination), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        op_types_to_quantize=QUANTIZED_OPS)
    finally:
        prepared.unlink(missing_ok=True)
