"""Configs of the data commands: prepare, stats, show."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imgclf.config.fields import opt


def check_fraction(flag: str, value: float, problems: list[str]) -> None:
    if not 0.0 <= value < 1.0:
        problems.append(f"{flag}: must be in [0, 1), got {value}")


@dataclass(frozen=True)
class PrepareConfig:
    """Verify, deduplicate and split raw images into DST/{train,val[,test]}/<class>/."""

    src: Path = opt(help="raw data: a folder of class folders, a folder of images with "
                         "same-named .txt label files, or a CSV file of path,label", positional=True)
    dst: Path = opt(help="output folder (created; must not be inside SRC)", positional=True)
    layout: Literal["auto", "folders", "labels", "csv"] = opt(
        "auto", "how SRC is organised; auto detects it and says which")
    val: float = opt(0.2, "fraction of each class for the validation split")
    test: float = opt(0.0, "fraction of each class for a test split (0 = none)")
    seed: int = opt(42, "seed of the stratified split")
    mode: Literal["rgb", "gray", "keep"] = opt(
        "keep", "pixel mode of the written images; keep = RGB or grey as found (16-bit grey kept in PNG)")
    format: Literal["png", "jpg", "keep"] = opt("png", "file format of the written images")
    jpg_quality: int = opt(95, "JPEG quality when --format jpg")
    max_pixels: int = opt(50_000_000, "reject images with more pixels than this (decompression bombs)")
    workers: int = opt(0, "decoding processes; 0 = one per CPU core")
    force: bool = opt(False, "write into a non-empty DST that imgclf did not make", switch=True)

    def check(self) -> list[str]:
        problems: list[str] = []
        check_fraction("--val", self.val, problems)
        check_fraction("--test", self.test, problems)
        if self.val + self.test >= 1.0:
            problems.append(f"--val + --test must leave images for training, got {self.val + self.test}")
        if not 1 <= self.jpg_quality <= 100:
            problems.append(f"--jpg-quality: must be 1..100, got {self.jpg_quality}")
        if self.max_pixels <= 0:
            problems.append("--max-pixels: must be positive")
        if self.workers < 0:
            problems.append("--workers: must be 0 (auto) or more")
        return problems


@dataclass(frozen=True)
class StatsConfig:
    """Class counts per split, image sizes, per-channel mean/std of the train split."""

    data: Path = opt(help="a prepared folder (DATA/{train,val,...}/<class>/) or any class-folder tree",
                     positional=True)
    json: bool = opt(False, "print the statistics as JSON instead of tables", switch=True)
    max_images: int = opt(0, "use at most this many train images for mean/std (0 = all)")

    def check(self) -> list[str]:
        return ["--max-images: must be 0 or more"] if self.max_images < 0 else []


@dataclass(frozen=True)
class ShowConfig:
    """A grid PNG of random samples, each titled with its class."""

    data: Path = opt(help="a prepared folder or any class-folder tree", positional=True)
    out: Path = opt(Path("samples.png"), "where to write the grid PNG")
    n: int = opt(16, "how many samples")
    seed: int = opt(0, "which samples")
    split: str = opt("train", "which split to sample from (when DATA has splits)")
    augmented: bool = opt(False, "show the samples after the training augmentation", switch=True)
    img_size: int = opt(112, "image size for --augmented")
    force: bool = opt(False, "overwrite --out if it exists", switch=True)

    def check(self) -> list[str]:
        return [] if 1 <= self.n <= 400 else [f"--n: must be 1..400, got {self.n}"]
