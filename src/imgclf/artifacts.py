"""RunDir: the only code that knows the file names inside a run folder.

A run folder is written by ``train`` and grows as other commands run on it::

    runs/<name>/
      config.json            fully resolved TrainConfig (+ derived values under "derived")
      classes.json           class names in index order
      metrics.csv            one row per evaluation (see METRICS_COLUMNS)
      summary.json           final metrics, data counts, timings, environment
      tb/                    TensorBoard event files (same numbers as metrics.csv)
      checkpoints/best.safetensors, last.safetensors   weights + JSON metadata (no pickle)
      checkpoints/last.state.pt                      resume state, loaded with weights_only=True
      .lock                                          the PID of the one process writing the run (train)
      evaluation.json, predictions.csv, confusion_matrix.csv/.png, reliability.png   (evaluate: own data, val, best)
      mistakes/                                      (mistakes: own data, val, best; Grad-CAM in mistakes/_gradcam/)
      enhance/                                       (enhance: own data, val, best)
      explain/                                       (explain: own data, val, best: heatmaps/, explain.csv/.json)
      calibration.json                               (calibrate: one record per calibrated checkpoint; the
                                                      temperature itself is in the checkpoint's metadata)
      evaluations/<data-name>-<split>-<checkpoint>/  every other evaluation: the same files and folders
      label-issues/<split>/                          (label-issues --run: K-fold label issues of the run's data)
      report.html                                    (report)
      export/<onnx|torchscript>-<best|last>[-int8]/   model + imgclf-export.json (export, --backend)

An evaluation is identified by (data folder, split, checkpoint). The run's own val evaluation
of the best checkpoint lives in the run folder itself (where it always has); every other one in
its own folder under evaluations/, so no evaluation ever overwrites another. ``mistakes``,
``enhance`` and ``explain`` write beside the evaluation they belong to. Ask for a folder with
``RunDir.evaluation_dir(data, split, checkpoint)``; nothing else builds these paths.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from imgclf.errors import ImgclfError

METRICS_COLUMNS = ("step", "epoch", "train_loss", "val_loss", "val_acc", "lr", "img_per_s", "elapsed_s",
                   "val_images")


OWN_SPLIT, OWN_CHECKPOINT = "val", "best"   # the evaluation that lives in the run folder itself
EVALUATIONS = "evaluations"
LABEL_ISSUES = "label-issues"
FOLDER_SPLIT = "images"                    # the "split" of a plain folder of images (enhance IMAGES)
_UNSAFE = re.compile(r"[^\w.\-]+")


def data_name(data: Path) -> str:
    """``<folder name>-<8 hex of sha256(resolved path)>``: two folders both called ``data`` differ."""
    resolved = Path(data).resolve()
    digest = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:8]
    return f"{_UNSAFE.sub('_', resolved.name).strip('._') or 'data'}-{digest}"


@dataclass(frozen=True)
class EvaluationDir:
    """The files of one evaluation (evaluate) and what mistakes, enhance and explain write beside it."""

    root: Path

    # written by evaluate
    @property
    def evaluation_json(self) -> Path: return self.root / "evaluation.json"
    @property
    def predictions_csv(self) -> Path: return self.root / "predictions.csv"
    @property
    def confusion_csv(self) -> Path: return self.root / "confusion_matrix.csv"
    @property
    def confusion_png(self) -> Path: return self.root / "confusion_matrix.png"
    @property
    def roc_png(self) -> Path: return self.root / "roc.png"          # two classes only
    @property
    def reliability_png(self) -> Path: return self.root / "reliability.png"

    # written by mistakes / enhance
    @property
    def mistakes_dir(self) -> Path: return self.root / "mistakes"
    @property
    def mistakes_csv(self) -> Path: return self.mistakes_dir / "mistakes.csv"
    @property
    def mistakes_gallery_png(self) -> Path: return self.mistakes_dir / "gallery.png"
    @property
    def label_errors_png(self) -> Path: return self.mistakes_dir / "label_errors.png"
    @property
    def mistakes_heatmaps_dir(self) -> Path: return self.mistakes_dir / "_gradcam"   # no class folder can be named so
    @property
    def mistakes_heatmaps_png(self) -> Path: return self.mistakes_dir / "gradcam.png"
    @property
    def enhance_dir(self) -> Path: return self.root / "enhance"
    @property
    def enhance_summary_csv(self) -> Path: return self.enhance_dir / "summary.csv"
    @property
    def enhance_per_image_csv(self) -> Path: return self.enhance_dir / "per_image.csv"
    @property
    def enhance_figures_dir(self) -> Path: return self.enhance_dir / "figures"

    # written by explain
    @property
    def explain_dir(self) -> Path: return self.root / "explain"
    @property
    def explain_csv(self) -> Path: return self.explain_dir / "explain.csv"
    @property
    def explain_json(self) -> Path: return self.explain_dir / "explain.json"
    @property
    def explain_gallery_png(self) -> Path: return self.explain_dir / "gallery.png"


@dataclass(frozen=True)
class LabelIssueFiles:
    """What ``imgclf label-issues`` writes: in RUN/label-issues/<split>/ (with --run) or its --out folder."""

    root: Path

    @property
    def summary_json(self) -> Path: return self.root / "summary.json"
    @property
    def issues_csv(self) -> Path: return self.root / "label_issues.csv"
    @property
    def out_of_fold_csv(self) -> Path: return self.root / "out_of_fold.csv"
    @property
    def gallery_png(self) -> Path: return self.root / "label_issues.png"


@dataclass(frozen=True)
class RunDir(EvaluationDir):
    """A run folder; it is also the folder of the run's own val evaluation of its best checkpoint."""

    # written by train
    @property
    def config_json(self) -> Path: return self.root / "config.json"
    @property
    def classes_json(self) -> Path: return self.root / "classes.json"
    @property
    def metrics_csv(self) -> Path: return self.root / "metrics.csv"
    @property
    def summary_json(self) -> Path: return self.root / "summary.json"
    @property
    def tensorboard_dir(self) -> Path: return self.root / "tb"
    @property
    def checkpoints_dir(self) -> Path: return self.root / "checkpoints"
    @property
    def lock(self) -> Path: return self.root / ".lock"   # held by the one process writing the run

    def weights(self, which: str) -> Path:
        """checkpoints/<best|last>.safetensors"""
        return self.checkpoints_dir / f"{which}.safetensors"

    @property
    def resume_state(self) -> Path: return self.checkpoints_dir / "last.state.pt"

    @property
    def report_html(self) -> Path: return self.root / "report.html"

    # written by calibrate
    @property
    def calibration_json(self) -> Path: return self.root / "calibration.json"

    def relative(self, path: Path | None) -> str:
        """``path`` relative to the run folder, with forward slashes (as CSV files record them); "" for None."""
        return path.relative_to(self.root).as_posix() if path is not None else ""

    # every evaluation (evaluate, mistakes, enhance, explain)
    @property
    def evaluations_dir(self) -> Path: return self.root / EVALUATIONS

    def own_data(self) -> Path | None:
        """The resolved data folder the run was trained on (config.json), or None when unknown."""
        try:
            config = json.loads(self.config_json.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(config, dict):
            return None
        derived = config.get("derived") if isinstance(config.get("derived"), dict) else {}
        path = derived.get("data_path") or config.get("data")
        return Path(path).resolve() if isinstance(path, str) and path else None

    def is_own_data(self, data: Path | None) -> bool:
        """True for None (= the run's own data) and for a path that resolves to it."""
        return data is None or Path(data).resolve() == self.own_data()

    def evaluation_dir(self, data: Path | None, split: str, checkpoint: str) -> EvaluationDir:
        """Where the evaluation of ``checkpoint`` on ``data/split`` goes (``data`` None = the run's own).

        The run's own val split with the best checkpoint is the run folder itself; any other is
        ``evaluations/<data-name>-<split>-<checkpoint>/`` (see :func:`data_name`).
        """
        if self.is_own_data(data) and (split, checkpoint) == (OWN_SPLIT, OWN_CHECKPOINT):
            return self
        folder = data if data is not None else self.own_data()
        if folder is None:
            raise ImgclfError(f"{self.root}: config.json does not name the run's data folder; pass DATA")
        key = f"{data_name(folder)}-{_UNSAFE.sub('_', split).strip('._') or 'split'}-{checkpoint}"
        return EvaluationDir(self.evaluations_dir / key)

    def list_evaluations(self) -> list[EvaluationDir]:
        """Every evaluation folder that holds an evaluation.json: the run's own first, then by name."""
        found = [EvaluationDir(p) for p in sorted(self.evaluations_dir.iterdir())
                 if p.is_dir() and not p.name.startswith(".")] if self.evaluations_dir.is_dir() else []
        own: list[EvaluationDir] = [self] if self.evaluation_json.is_file() else []
        return own + [e for e in found if e.evaluation_json.is_file()]

    # written by export (and by --backend onnxruntime, which exports the checkpoint once)
    def export_dir(self, runtime: str, which: str, int8: bool = False) -> Path:
        """export/<onnx|torchscript>-<best|last>[-int8]/"""
        return self.root / "export" / f"{runtime}-{which}{'-int8' if int8 else ''}"

    # label-issues --run RUN
    @property
    def label_issues_dir(self) -> Path: return self.root / LABEL_ISSUES

    def label_issues(self, split: str) -> LabelIssueFiles:
        """RUN/label-issues/<split>/: the label issues of the run's own data, one split each."""
        return LabelIssueFiles(self.label_issues_dir / (_UNSAFE.sub("_", split).strip("._") or "split"))

    def list_label_issues(self) -> list[LabelIssueFiles]:
        """Every label-issues folder holding a summary.json, train first, then by name."""
        if not self.label_issues_dir.is_dir():
            return []
        folders = sorted(self.label_issues_dir.iterdir(), key=lambda p: (p.name != "train", p.name))
        found = [LabelIssueFiles(p) for p in folders if p.is_dir() and not p.name.startswith(".")]
        return [f for f in found if f.summary_json.is_file()]

    def require_trained(self) -> None:
        """Raise a clear error unless this looks like a finished or resumable training run."""
        if not self.root.is_dir():
            raise ImgclfError(f"{self.root}: no such run folder (create one with: imgclf train DATA --out {self.root})")
        if not self.config_json.is_file():
            raise ImgclfError(f"{self.root}: not a run folder (no config.json); pass the folder imgclf train wrote")


def new_run_dir(parent: Path, stem: str) -> Path:
    """``parent/<stem>-N`` with the first N that does not exist yet (never reuses a folder)."""
    parent.mkdir(parents=True, exist_ok=True)
    taken = {int(m.group(1)) for p in parent.iterdir() if (m := re.fullmatch(re.escape(stem) + r"-(\d+)", p.name))}
    number = 1 + max(taken, default=0)
    while True:
        path = parent / f"{stem}-{number}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            number += 1
