"""Static int8 quantization of an exported ONNX model with onnxruntime's own tooling.

Weights int8 per channel, activations uint8, QDQ format, activation ranges calibrated on real
training images at the 99.99th percentile of |x| (min/max let a few outliers stretch the range: on a
resnet18 at 112 px it moved val accuracy by 1.4 points against 0.3 with the percentile; BENCHMARKS.md). The probability head (Softmax / Sigmoid) stays in float so probabilities keep
their resolution. Only the operators below are quantized.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgclf.deploy.onnx_model import import_onnxruntime

QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "Add", "Mul", "Relu", "Clip", "MaxPool", "AveragePool",
                 "GlobalAveragePool", "Flatten", "Reshape", "Concat"]
CALIBRATION_BATCH = 16
CALIBRATION_PERCENTILE = 99.99


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over a uint8 (N, C, S, S) array."""

    def __init__(self, images: np.ndarray, batch_size: int) -> None:
        self.batches = iter([np.ascontiguousarray(images[i:i + batch_size])
                             for i in range(0, len(images), batch_size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"images": batch}


def even_batch(num_images: int, largest: int = CALIBRATION_BATCH) -> int:
    """The largest batch size up to ``largest`` that divides ``num_images``: the percentile calibrator
    stacks the outputs of all batches, so they must have one shape."""
    return next(b for b in range(min(largest, max(1, num_images)), 0, -1) if num_images % b == 0)


def quantize_onnx(source: Path, destination: Path, calibration_images: np.ndarray) -> None:
    """Write an int8 copy of ``source`` calibrated on uint8 images (N, C, S, S) (already preprocessed)."""
    import_onnxruntime()
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader = type("Reader", (_Batches, CalibrationDataReader), {})(calibration_images, even_batch(len(calibration_images)))
    prepared = destination.with_name(destination.stem + ".prepared.onnx")
    try:
        # ONNX's own shape inference only: the symbolic one fails on FastNet's pooled head (a Reshape
        # whose input shape it cannot follow) and fixed-shape conv nets gain nothing from it
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(destination), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        op_types_to_quantize=QUANTIZED_OPS, calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"CalibPercentile": CALIBRATION_PERCENTILE})
    finally:
        prepared.unlink(missing_ok=True)
