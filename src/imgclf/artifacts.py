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
      evaluation.json, predictions.csv, confusion_matrix.csv/.png   (evaluate)
      mistakes/                                      (mistakes)
      enhance/                                       (enhance)
      report.html                                    (report)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from imgclf.errors import ImgclfError

METRICS_COLUMNS = ("step", "epoch", "train_loss", "val_loss", "val_acc", "lr", "img_per_s", "elapsed_s",
                   "val_images")


@dataclass(frozen=True)
class RunDir:
    root: Path

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

    def weights(self, which: str) -> Path:
        """checkpoints/<best|last>.safetensors"""
        return self.checkpoints_dir / f"{which}.safetensors"

    @property
    def resume_state(self) -> Path: return self.checkpoints_dir / "last.state.pt"

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
    def roc_png(self) -> Path: return self.root / "roc.png"

    # written by mistakes / enhance / report
    @property
    def mistakes_dir(self) -> Path: return self.root / "mistakes"
    @property
    def mistakes_csv(self) -> Path: return self.mistakes_dir / "mistakes.csv"
    @property
    def mistakes_gallery_png(self) -> Path: return self.mistakes_dir / "gallery.png"
    @property
    def label_errors_png(self) -> Path: return self.mistakes_dir / "label_errors.png"
    @property
    def enhance_dir(self) -> Path: return self.root / "enhance"
    @property
    def enhance_summary_csv(self) -> Path: return self.enhance_dir / "summary.csv"
    @property
    def enhance_per_image_csv(self) -> Path: return self.enhance_dir / "per_image.csv"
    @property
    def enhance_figures_dir(self) -> Path: return self.enhance_dir / "figures"
    @property
    def report_html(self) -> Path: return self.root / "report.html"

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
