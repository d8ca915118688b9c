"""``evaluate`` and ``mistakes`` for multi-label runs: per-label metrics and wrong labels per image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imgclf.analysis.metrics import exact_match_ratio, mean_average_precision, multilabel_metrics
from imgclf.analysis.mistakes import multilabel_mistakes, safe_name
from imgclf.artifacts import RunDir
from imgclf.console import print_table
from imgclf.data.loading import load_images
from imgclf.data.multilabel import multi_hot, read_labels_csv
from imgclf.engine.inference import LoadedModel, predict_probs
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
    images, ok, errors = load_images(paths, loaded.img_size, loaded.channels, desc=f"decoding {split}")
    if errors:
        raise ImgclfError(f"{len(errors)} file(s) in {root}/{split} cannot be decoded: "
                          + "; ".join(f"{p}: {r}" for p, r in errors[:5]))
    targets = multi_hot(labels, loaded.classes).numpy()
    probs = predict_probs(loaded, images, batch_size).numpy().astype(np.float64)
    return paths, targets, probs, images


def threshold_of(loaded: LoadedModel) -> float:
    return float(loaded.meta.get("threshold", 0.5))


def label_names(row: np.ndarray, classes: list[str]) -> str:
    return ";".join(classes[k] for k in np.flatnonzero(row))


def multilabel_summary(targets: np.ndarray, probs: np.ndarray, classes: list[str], threshold: float) -> dict:
    """evaluation.json for a multi-label run; ``accuracy`` is the per-label accuracy (as val_acc in training)."""
    predicted = probs >= threshold
    per_label = multilabel_metrics(targets, probs, threshold)
    return {"multi_label": True, "threshold": threshold, "num_images": int(len(targets)),
            "accuracy": float((predicted == targets.astype(bool)).mean()),
            "exact_match": exact_match_ratio(targets, probs, threshold),
            "map": mean_average_precision(targets, probs), "macro_f1": float(np.mean(per_label.f1)),
            "loss": float(-np.where(targets > 0, np.log(np.clip(probs, 1e-7, 1)),
                                    np.log(np.clip(1 - probs, 1e-7, 1))).mean()),
            "per_class": [dict(zip(("class", "precision", "recall", "f1", "support"), row))
                          for row in per_label.rows(classes)]}


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
