"""Running a trained model outside the training code: export, inference backends, their choice.

``sidecar`` (the JSON next to an exported model), ``probabilities`` and ``onnx_model`` import no
torch: they are all that ``imgclf predict EXPORT_DIR`` needs (``pip install 'imgclf[infer]'``).
``export``, ``quantize`` and ``backends`` build exports from a run and pick a backend.
"""
