"""``imgclf predict``: top-k classes with probabilities for files or folders."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from imgclf.config import PredictConfig
from imgclf.console import print_table, warn
from imgclf.engine.inference import load_image_files, load_run_model, predict_probs
from imgclf.errors import ImgclfError
from imgclf.io import refuse_overwrite, write_csv


@dataclass
class PredictResult:
    predictions: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    exit_code: int = 0


def run(cfg: PredictConfig) -> PredictResult:
    if cfg.csv is not None:
        refuse_overwrite(cfg.csv, cfg.force)
    loaded = load_run_model(cfg.run, cfg.checkpoint, cfg.device, cfg.precision,
                            trust_model_code=cfg.trust_model_code)
    paths, images, skipped = load_image_files(loaded, cfg.paths)
    for path, reason in skipped:
        warn(f"{path}: {reason}; skipped")
    if not paths:
        raise ImgclfError("no image could be read from the given paths")
    probs = predict_probs(loaded, images, cfg.batch_size, tta_flip=cfg.tta)   # (N, K)
    classes = loaded.classes
    k = min(cfg.topk, len(classes))
    top_p, top_i = probs.topk(k, dim=1)
    rows = [{"path": str(p), "top": [{"class": classes[int(i)], "prob": round(float(q), 6)}
                                     for q, i in zip(top_p[n], top_i[n])]}
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


def _write_csv(path: Path, paths: list[Path], probs: torch.Tensor, classes: list[str]) -> None:
    preds = probs.argmax(1)
    write_csv(path, ["path", "predicted", *(f"prob_{c}" for c in classes)],
              [[str(p), classes[int(preds[n])], *(f"{float(v):.6f}" for v in probs[n])]
               for n, p in enumerate(paths)])
