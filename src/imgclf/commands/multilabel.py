"""``evaluate`` and ``mistakes`` for multi-label runs: per-label metrics and wrong labels per image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgclf.analysis.metrics import multilabel_metrics
from imgclf.analysis.mistakes import multilabel_mistakes, safe_name
from imgclf.artifacts import RunDir
from imgclf.console import print_table
from imgclf.data.multilabel import multi_hot, read_labels_csv
from imgclf.engine.inference import LoadedModel, decode_labelled, predict_probs
from imgclf.engine.multilabel import multilabel_scores
from imgclf.errors import ImgclfError
from imgclf.io import write_csv


def is_multilabel_run(loaded: LoadedModel) -> bool:
    return loaded.meta.get("output") == "multilabel"


def load_multilabel_split(loaded: LoadedModel, data: Path | None, split: str, batch_size: int
                          ) -> tuple[list[Path], np.ndarray, np.ndarray, Any]:
    """(paths, multi-hot targets (N, K), sigmoid probs (N, K), uint8 images) of DATA/<split>/labels.csv."""
    root = data or loaded.data_root
    if root is None:
        raise ImgclfError("no data folder: pass DATA")
    paths, labels = read_labels_csv(Path(root) / split)
    images = decode_labelled(loaded, paths, f"{root}/{split}")
    targets = multi_hot(labels, loaded.classes).numpy()
    probs = predict_probs(loaded, images, batch_size).numpy().astype(np.float64)
    return paths, targets, probs, images


def threshold_of(loaded: LoadedModel) -> float:
    return float(loaded.meta.get("threshold", 0.5))


def label_names(row: np.ndarray, classes: list[str]) -> str:
    return ";".join(classes[k] for k in np.flatnonzero(row))


def multilabel_summary(targets: np.ndarray, probs: np.ndarray, classes: list[str], threshold: float) -> dict:
    """evaluation.json for a multi-label run: the numbers training logs, plus per-label P/R/F1."""
    scores = multilabel_scores(torch.from_numpy(probs), torch.from_numpy(targets), threshold)
    return {"multi_label": True, "threshold": threshold, "num_images": int(len(targets)),
            "accuracy": scores["val_acc"], "loss": scores["val_loss"], "map": scores["val_map"],
            "exact_match": scores["val_exact_match"], "macro_f1": scores["val_f1"],
            "per_class": [dict(zip(("class", "precision", "recall", "f1", "support"), row))
                          for row in multilabel_metrics(targets, probs, threshold).rows(classes)]}


def write_multilabel_predictions(path: Path, paths: list[Path], targets: np.ndarray, probs: np.ndarray,
                                 classes: list[str], threshold: float) -> None:
    predicted = probs >= threshold
    write_csv(path, ["path", "true", "predicted", *(f"prob_{c}" for c in classes), "correct"],
              [[str(p), label_names(targets[i], classes), label_names(predicted[i], classes),
                *(f"{v:.6f}" for v in probs[i]), int((predicted[i] == targets[i].astype(bool)).all())]
               for i, p in enumerate(paths)])


def write_multilabel_mistakes(run: RunDir, paths: list[Path], targets: np.ndarray, probs: np.ndarray,
                              classes: list[str], threshold: float, copy: Any) -> int:
    """Copy each image with a wrong label to mistakes/multi-label/, CSV ranked by loss; returns the count."""
    wrong = multilabel_mistakes(targets, probs, classes, threshold)
    rows = []
    for rank, item in enumerate(wrong, start=1):
        source = paths[item.index]
        destination = run.mistakes_dir / "multi-label" / f"{rank:04d}_{safe_name(source.stem)}{source.suffix}"
        copy(source, destination)
        rows.append([rank, str(source), destination.relative_to(run.root).as_posix(),
                     label_names(targets[item.index], classes), label_names(probs[item.index] >= threshold, classes),
                     ";".join(item.missed), ";".join(item.extra),
                     *(f"{v:.6f}" for v in probs[item.index]), f"{item.loss:.6f}"])
    write_csv(run.mistakes_csv, ["rank", "path", "copy", "true", "predicted", "missing", "extra",
                                 *(f"prob_{c}" for c in classes), "loss"], rows)
    print_table(["rank", "missing", "extra", "loss", "file"],
                [[r[0], r[5] or "-", r[6] or "-", float(r[-1]), Path(r[1]).name] for r in rows[:10]])
    return len(wrong)
