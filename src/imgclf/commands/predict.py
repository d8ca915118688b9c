"""``imgclf predict``: top-k classes with probabilities for files or folders.

RUN is a run folder (torch or onnxruntime, ``--backend``) or an ONNX export folder written by
``imgclf export``; the latter path imports no torch (``pip install 'imgclf[infer]'`` is enough).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.config import PredictConfig
from imgclf.console import print_table, warn
from imgclf.deploy.sidecar import is_export_dir
from imgclf.errors import ImgclfError
from imgclf.io import refuse_overwrite, write_csv


@dataclass
class PredictResult:
    predictions: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    exit_code: int = 0


def predict_with_run(cfg: PredictConfig) -> tuple[list[Path], np.ndarray, list[str], list[tuple[Path, str]]]:
    """(paths, probs (N, K), classes, skipped) with a run folder's weights."""
    from imgclf.engine.inference import load_image_files, load_run_model, predict_probs

    loaded = load_run_model(cfg.run, cfg.checkpoint, cfg.device, cfg.precision, backend=cfg.backend,
                            trust_model_code=cfg.trust_model_code)
    paths, images, skipped = load_image_files(loaded, cfg.paths)
    _warn_skipped(skipped, paths)
    return paths, predict_probs(loaded, images, cfg.batch_size, tta_flip=cfg.tta).numpy(), loaded.classes, skipped


def predict_with_export(cfg: PredictConfig) -> tuple[list[Path], np.ndarray, list[str], list[tuple[Path, str]]]:
    """The same with an ONNX export folder and onnxruntime only (numpy, Pillow: no torch)."""
    from imgclf.data.folders import expand_paths
    from imgclf.data.loading import decode_files
    from imgclf.deploy.onnx_model import OnnxClassifier
    from imgclf.deploy.sidecar import read_export

    info = read_export(cfg.run)
    if info.runtime != "onnx":
        raise ImgclfError(f"{cfg.run} holds a TorchScript model (for libtorch); predict with the run folder or "
                          "an ONNX export (imgclf export RUN --format onnx)")
    from imgclf.analysis.enhance import make_preprocess   # numpy + Pillow

    preprocess = make_preprocess(info.preprocess)
    classifier = OnnxClassifier(info.model_path, info.output, info.temperature, cfg.device)
    files, skipped = expand_paths(cfg.paths)
    images, ok, errors = decode_files(files, info.img_size, info.channels)
    paths, skipped = [files[i] for i in ok], skipped + errors
    _warn_skipped(skipped, paths)
    return paths, classifier.predict_probs(images, cfg.batch_size, cfg.tta, preprocess), info.classes, skipped


def _warn_skipped(skipped: list[tuple[Path, str]], paths: list[Path]) -> None:
    for path, reason in skipped:
        warn(f"{path}: {reason}; skipped")
    if not paths:
        raise ImgclfError("no image could be read from the given paths")


def run(cfg: PredictConfig) -> PredictResult:
    if cfg.csv is not None:
        refuse_overwrite(cfg.csv, cfg.force)
    predict = predict_with_export if is_export_dir(cfg.run) else predict_with_run
    paths, probs, classes, skipped = predict(cfg)   # probs: (N, K)
    k = min(cfg.topk, len(classes))
    top_i = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    rows = [{"path": str(p), "top": [{"class": classes[int(i)], "prob": round(float(probs[n, i]), 6)}
                                     for i in top_i[n]]}
            for n, p in enumerate(paths)]
    if cfg.csv is not None:
        _write_csv(cfg.csv, paths, probs, classes)
    if cfg.json:
        print(json.dumps({"predictions": rows, "skipped": [{"path": str(p), "reason": r} for p, r in skipped]},
                         indent=2))
    else:
        print_table(["path"] + [f"top{j + 1}" for j in range(k)],
                    [[r["path"]] + [f"{t['class']} {t['prob']:.3f}" for t in r["top"]] for r in rows])
    return PredictResult(rows, [(str(p), r) for p, r in skipped], exit_code=1 if skipped else 0)


def _write_csv(path: Path, paths: list[Path], probs: np.ndarray, classes: list[str]) -> None:
    preds = probs.argmax(1)
    write_csv(path, ["path", "predicted", *(f"prob_{c}" for c in classes)],
              [[str(p), classes[int(preds[n])], *(f"{float(v):.6f}" for v in probs[n])]
               for n, p in enumerate(paths)])
