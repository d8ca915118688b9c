"""``imgclf evaluate``: metrics, confusion matrix and predictions.csv of a run on a labelled split."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.analysis.metrics import classification_summary, per_sample_loss
from imgclf.config import EvaluateConfig
from imgclf.console import print_table, status
from imgclf.artifacts import RunDir
from imgclf.analysis.multilabel import multilabel_prediction_rows, multilabel_summary
from imgclf.engine.inference import LoadedModel, load_multilabel_split, load_run_model, load_split, predict_probs
from imgclf.io import write_csv, write_json
from imgclf.reporting.plots import plot_confusion_matrix


@dataclass
class EvaluateResult:
    accuracy: float
    loss: float
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0


def predictions_rows(paths: list[Path], targets: np.ndarray, probs: np.ndarray,
                     classes: list[str]) -> tuple[list[str], list[list[Any]]]:
    """predictions.csv: path, true, predicted, one probability per class, loss, correct."""
    preds = probs.argmax(1)
    losses = per_sample_loss(targets, probs)
    header = ["path", "true", "predicted", *(f"prob_{c}" for c in classes), "loss", "correct"]
    rows = [[str(p), classes[t], classes[q], *(f"{v:.6f}" for v in probs[n]), f"{losses[n]:.6f}", int(t == q)]
            for n, (p, t, q) in enumerate(zip(paths, targets, preds))]
    return header, rows


def evaluate_split(loaded: LoadedModel, data: Path | None, split: str, batch_size: int
                   ) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """(paths, targets (N,), probs (N, K)) for every image of the split, each exactly once."""
    paths, targets, images = load_split(loaded, data, split)
    probs = predict_probs(loaded, images, batch_size)
    return paths, targets.numpy(), probs.numpy().astype(np.float64)


def run(cfg: EvaluateConfig) -> EvaluateResult:
    run_dir = RunDir(Path(cfg.run))
    loaded = load_run_model(run_dir.root, cfg.checkpoint, cfg.device, cfg.precision,
                            trust_model_code=cfg.trust_model_code)
    if loaded.multi_label:
        return _run_multilabel(cfg, loaded, run_dir)
    paths, targets, probs = evaluate_split(loaded, cfg.data, cfg.split, cfg.batch_size)
    classes = loaded.classes
    summary = {"split": cfg.split, "checkpoint": cfg.checkpoint, "step": loaded.meta.get("step"),
               "classes": classes, "roc_auc": None, **classification_summary(targets, probs, classes)}
    header, rows = predictions_rows(paths, targets, probs, classes)
    write_csv(run_dir.predictions_csv, header, rows)
    matrix = np.asarray(summary["confusion_matrix"])
    write_csv(run_dir.confusion_csv, ["true\\predicted", *classes],
              [[c, *map(int, matrix[i])] for i, c in enumerate(classes)])
    plot_confusion_matrix(matrix, classes, run_dir.confusion_png)
    write_json(run_dir.evaluation_json, summary)
    print_table(["class", "precision", "recall", "f1", "support"],
                [[r["class"], r["precision"], r["recall"], r["f1"], r["support"]] for r in summary["per_class"]])
    auc = f", ROC AUC {summary['roc_auc']:.4f}" if summary["roc_auc"] is not None else (
        f", ROC AUC {summary['roc_auc_note']}" if "roc_auc_note" in summary else "")
    print(f"{cfg.split}: {len(targets)} images, accuracy {summary['accuracy']:.4f}, loss {summary['loss']:.4f}, "
          f"macro F1 {summary['macro_f1']:.4f}{auc}")
    status(f"wrote {run_dir.predictions_csv.name}, {run_dir.confusion_png.name}, {run_dir.evaluation_json.name} "
           f"in {run_dir.root}")
    return EvaluateResult(summary["accuracy"], summary["loss"], summary)


def _run_multilabel(cfg: EvaluateConfig, loaded: LoadedModel, run_dir: RunDir) -> EvaluateResult:
    """Per-label precision/recall/F1, mean average precision and exact-match ratio at the run's threshold."""
    paths, targets, images = load_multilabel_split(loaded, cfg.data, cfg.split)
    probs = predict_probs(loaded, images, cfg.batch_size).numpy().astype(np.float64)   # (N, K)
    classes, threshold = loaded.classes, loaded.threshold
    summary = {"split": cfg.split, "checkpoint": cfg.checkpoint, "step": loaded.meta.get("step"),
               "classes": classes, "roc_auc": None, **multilabel_summary(targets, probs, classes, threshold)}
    write_csv(run_dir.predictions_csv, *multilabel_prediction_rows(paths, targets, probs, classes, threshold))
    write_json(run_dir.evaluation_json, summary)
    print_table(["label", "precision", "recall", "f1", "support"],
                [[r["class"], r["precision"], r["recall"], r["f1"], r["support"]] for r in summary["per_class"]])
    mean_ap = "undefined (no label has a positive)" if summary["map"] is None else f"{summary['map']:.4f}"
    print(f"{cfg.split}: {len(paths)} images, per-label accuracy {summary['accuracy']:.4f}, mAP "
          f"{mean_ap}, exact match {summary['exact_match']:.4f} (threshold {threshold})")
    return EvaluateResult(summary["accuracy"], summary["loss"], summary)
