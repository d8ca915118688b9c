"""Configs of the data commands: prepare, stats, show."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imgclf.config.fields import opt


@dataclass(frozen=True)
class PrepareConfig:
    """Verify, deduplicate and split raw images into DST/{train,val[,test]}/<class>/."""

    src: Path = opt(help="raw data: a folder of class folders, a folder of images with "
                         "same-named .txt label files, or a CSV file of path,label", positional=True)
    dst: Path = opt(help="output folder (created; must not be inside SRC)", positional=True)
    layout: Literal["auto", "folders", "labels", "csv"] = opt(
        "auto", "how SRC is organised; auto detects it and says which")
    val: float = opt(0.2, "fraction of each class for the validation split", min=0, below=1)
    test: float = opt(0.0, "fraction of each class for a test split (0 = none)", min=0, below=1)
    seed: int = opt(42, "seed of the stratified split")
    mode: Literal["rgb", "gray", "keep"] = opt(
        "keep", "pixel mode of the written images; keep = RGB or grey as found (16-bit grey kept in PNG)")
    format: Literal["png", "jpg", "keep"] = opt("png", "file format of the written images")
    jpg_quality: int = opt(95, "JPEG quality when --format jpg", min=1, max=100)
    max_pixels: int = opt(50_000_000, "reject images with more pixels than this (decompression bombs)", min=1)
    near_duplicates: Literal["together", "report", "off"] = opt(
        "together", "near-duplicates (resized, re-encoded or lightly edited copies, by perceptual hash): together = "
                    "each group in one split; report = only list them; off = do not look")
    near_distance: int = opt(4, "largest Hamming distance between the 64-bit perceptual hashes of near-duplicates "
                                "(copies measured within 4, distinct digits from 6)", min=0, max=16)
    workers: int = opt(0, "decoding processes; 0 = one per CPU core", min=0)
    force: bool = opt(False, "write into a non-empty DST that imgclf did not make", switch=True)

    def check(self) -> list[str]:
        if self.val + self.test >= 1.0:
            return [f"--val + --test must leave images for training, got {self.val + self.test}"]
        return []


@dataclass(frozen=True)
class StatsConfig:
    """Class counts per split, image sizes, per-channel mean/std of the train split."""

    data: Path = opt(help="a prepared folder (DATA/{train,val,...}/<class>/) or any class-folder tree",
                     positional=True)
    json: bool = opt(False, "print the statistics as JSON instead of tables", switch=True)
    max_images: int = opt(0, "use at most this many train images for mean/std (0 = all)", min=0)


@dataclass(frozen=True)
class ShowConfig:
    """A grid PNG of random samples, each titled with its class."""

    data: Path = opt(help="a prepared folder or any class-folder tree", positional=True)
    out: Path = opt(Path("samples.png"), "where to write the grid PNG")
    n: int = opt(16, "how many samples", min=1, max=400)
    seed: int = opt(0, "which samples")
    split: str = opt("train", "which split to sample from (when DATA has splits)")
    augmented: bool = opt(False, "show the samples after the training augmentation", switch=True)
    img_size: int = opt(112, "image size for --augmented", min=8, max=1024)
    force: bool = opt(False, "overwrite --out if it exists", switch=True)
