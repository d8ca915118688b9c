"""Config of ``imgclf label-issues``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imgclf.config.fields import opt
from imgclf.config.shared import Device, Precision, batch_size_opt, device_opt, precision_opt, trust_model_code_opt


@dataclass(frozen=True)
class LabelIssuesConfig:
    """Likely label errors in any split: K models, each trained on K-1 folds of it, give every image
    probabilities from a model that never saw it; confident learning (cleanlab's rule) flags the labels
    those probabilities contradict."""

    data: Path | None = opt(None, "prepared data, DATA/<split>/<class>/ (default: the data of --run)", positional=True)
    split: str = opt("train", "which split to examine")
    run: Path | None = opt(None, "a run folder: write into RUN/label-issues/<split>/ (imgclf report RUN shows it) "
                                 "and train the folds with the run's model, image size and channels")
    out: Path | None = opt(None, "without --run: the folder to write (default: a new runs/label-issues-N)")
    folds: int = opt(5, "K: models trained, each on all folds but one", min=2)
    jobs: int = opt(0, "folds trained at the same time, in separate processes, sharing the cores; 0 = auto "
                       "(one per 4 CPU cores, up to K; 1 on a GPU)", min=0)
    model: str = opt("", "model of the fold models (default: the --run's, else what imgclf train --model auto "
                         "picks for the data)")
    img_size: int = opt(0, "resolution in pixels (default: the --run's, else from the data)", min=0, max=1024)
    channels: Literal["auto", "rgb", "gray"] = opt("auto", "auto = the --run's, else rgb")
    epochs: int = opt(5, "epochs per fold model (short: they only need to rank the labels)", min=1)
    batch_size: int = batch_size_opt(64, "images per optimisation step")
    lr: float = opt(0.05, "peak learning rate (SGD, cosine schedule, as imgclf train; not lowered for these short "
                          "runs: with train's short-run rule the flags lost precision on digits)", above=0)
    seed: int = opt(0, "seed of the folds and of every fold model")
    gallery: int = opt(36, "how many flagged images the gallery PNG shows", min=0)
    device: Device = device_opt()
    precision: Precision = precision_opt()
    trust_model_code: bool = trust_model_code_opt()
    force: bool = opt(False, "write into a non-empty --out folder", switch=True)

    def check(self) -> list[str]:
        problems = []
        if self.data is None and self.run is None:
            problems.append("DATA is required (or --run RUN, whose data is used)")
        if self.run is not None and self.out is not None:
            problems.append("--out: not with --run (the results go into RUN/label-issues/<split>/)")
        if 0 < self.img_size < 8:
            problems.append(f"--img-size: must be 0 (auto) or 8..1024, got {self.img_size}")
        return problems
