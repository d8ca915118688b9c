"""``imgclf evaluate``: metrics, confusion matrix and predictions.csv of a run on labelled splits.

Each (data folder, split, checkpoint) is written to its own folder (``RunDir.evaluation_dir``):
the run's own val evaluation of its best checkpoint in the run folder itself, every other one
under ``RUN/evaluations/``, so evaluating other data never overwrites the run's own results.
Without --split, val is evaluated and, when DATA has a test split, test next to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.analysis.calibration import calibration_summary, multilabel_calibration_summary
from imgclf.analysis.metrics import classification_summary, per_sample_loss
from imgclf.analysis.multilabel import multilabel_prediction_rows, multilabel_summary
from imgclf.analysis.provenance import describe_evaluation, describe_source
from imgclf.artifacts import EvaluationDir, RunDir
from imgclf.config import EvaluateConfig
from imgclf.console import print_table, status
from imgclf.engine.inference import (LoadedModel, data_folder, load_multilabel_split, load_run_model, load_split,
                                     predict_probs)
from imgclf.io import write_csv, write_json
from imgclf.reporting.plots import plot_confusion_matrix, plot_reliability_diagram, plot_roc_curve

DEFAULT_SPLITS = ("val", "test")


@dataclass
class EvaluateResult:
    """The first split's numbers (val unless --split says otherwise), and every split evaluated."""

    accuracy: float
    loss: float
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)   # split -> its evaluation.json
    folders: dict[str, Path] = field(default_factory=dict)            # split -> the folder written


def default_splits(data: Path) -> list[str]:
    """val, and test next to it, where DATA has them (val alone if neither, so the error names it)."""
    return [s for s in DEFAULT_SPLITS if (data / s).is_dir()] or [DEFAULT_SPLITS[0]]


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
                            trust_model_code=cfg.trust_model_code, backend=cfg.backend)
    data = data_folder(loaded, cfg.data)
    own = run_dir.is_own_data(cfg.data)
    result = EvaluateResult(0.0, 0.0)
    for split in [cfg.split] if cfg.split else default_splits(data):
        folder = run_dir.evaluation_dir(cfg.data, split, cfg.checkpoint)
        described = describe_evaluation(data, own, split, cfg.checkpoint, loaded.meta.get("step"))
        write = _write_multilabel if loaded.multi_label else _write_single
        summary, line = write(loaded, cfg.data, described, cfg.batch_size, folder)
        print(line + (f"  [{summary['selection']}]" if summary["selection"] else ""))
        print(calibration_line(summary["calibration"]))
        status(f"wrote the evaluation of {describe_source(summary)} in {folder.root}")
        result.splits[split], result.folders[split] = summary, folder.root
    first = next(iter(result.splits.values()))
    result.accuracy, result.loss, result.summary = first["accuracy"], first["loss"], first
    return result


def _write_single(loaded: LoadedModel, data: Path | None, described: dict[str, Any], batch_size: int,
                  folder: EvaluationDir) -> tuple[dict[str, Any], str]:
    """predictions.csv, confusion matrix (CSV + PNG), ROC curve for two classes, evaluation.json."""
    split, classes = described["split"], loaded.classes
    paths, targets, probs = evaluate_split(loaded, data, split, batch_size)
    summary = {**described, "classes": classes, "roc_auc": None, **classification_summary(targets, probs, classes),
               "calibration": calibration_summary(targets, probs, loaded.temperature)}
    write_csv(folder.predictions_csv, *predictions_rows(paths, targets, probs, classes))
    matrix = np.asarray(summary["confusion_matrix"])
    write_csv(folder.confusion_csv, ["true\\predicted", *classes],
              [[c, *map(int, matrix[i])] for i, c in enumerate(classes)])
    plot_confusion_matrix(matrix, classes, folder.confusion_png)
    if summary["roc_auc"] is not None:
        from sklearn.metrics import roc_curve

        fpr, tpr, _ = roc_curve(targets == 1, probs[:, 1])
        plot_roc_curve(fpr, tpr, summary["roc_auc"], classes[1], folder.roc_png)
    write_calibrated(folder, summary)
    print_table(["class", "precision", "recall", "f1", "support"],
                [[r["class"], r["precision"], r["recall"], r["f1"], r["support"]] for r in summary["per_class"]])
    auc = f", ROC AUC {summary['roc_auc']:.4f}" if summary["roc_auc"] is not None else (
        f", ROC AUC {summary['roc_auc_note']}" if "roc_auc_note" in summary else "")
    return summary, (f"{split}: {len(targets)} images, accuracy {summary['accuracy']:.4f}, loss "
                     f"{summary['loss']:.4f}, macro F1 {summary['macro_f1']:.4f}{auc}")


def _write_multilabel(loaded: LoadedModel, data: Path | None, described: dict[str, Any], batch_size: int,
                      folder: EvaluationDir) -> tuple[dict[str, Any], str]:
    """Per-label precision/recall/F1, mean average precision and exact-match ratio at the run's threshold."""
    split = described["split"]
    paths, targets, images = load_multilabel_split(loaded, data, split)
    probs = predict_probs(loaded, images, batch_size).numpy().astype(np.float64)   # (N, K)
    classes, threshold = loaded.classes, loaded.threshold
    summary = {**described, "classes": classes, "roc_auc": None,
               **multilabel_summary(targets, probs, classes, threshold),
               "calibration": multilabel_calibration_summary(targets, probs, loaded.temperature)}
    write_csv(folder.predictions_csv, *multilabel_prediction_rows(paths, targets, probs, classes, threshold))
    write_calibrated(folder, summary)
    print_table(["label", "precision", "recall", "f1", "support"],
                [[r["class"], r["precision"], r["recall"], r["f1"], r["support"]] for r in summary["per_class"]])
    mean_ap = "undefined (no label has a positive)" if summary["map"] is None else f"{summary['map']:.4f}"
    return summary, (f"{split}: {len(paths)} images, per-label accuracy {summary['accuracy']:.4f}, mAP "
                     f"{mean_ap}, exact match {summary['exact_match']:.4f} (threshold {threshold})")


def write_calibrated(folder: EvaluationDir, summary: dict[str, Any]) -> None:
    """evaluation.json (with the calibration numbers and bins) and the reliability diagram PNG."""
    calibration = summary["calibration"]
    plot_reliability_diagram(calibration["bins"], folder.reliability_png, calibration["ece"])
    write_json(folder.evaluation_json, summary)


def calibration_line(calibration: dict[str, Any]) -> str:
    temperature = calibration["temperature"]
    how = f"temperature {temperature:.4g} from imgclf calibrate" if temperature != 1.0 else "not calibrated"
    return (f"  calibration: ECE {calibration['ece']:.4f} ({calibration['num_bins']} bins), NLL {calibration['nll']:.4f}, "
            f"Brier {calibration['brier']:.4f} ({how})")
