"""``imgclf demo``: the whole pipeline on scikit-learn's bundled handwritten digits (real scans, no download)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

import imgclf
from imgclf.artifacts import RunDir, new_run_dir
from imgclf.config import DemoConfig
from imgclf.console import status


@dataclass
class DemoResult:
    root: Path
    run_dir: Path
    report: Path
    val_acc: float
    exit_code: int = 0


def write_digits(raw: Path, per_class: int = 0) -> int:
    """scikit-learn's 1,797 8x8 digit scans as raw/<digit>/digit_<n>.png (0..16 scaled to 0..255).

    ``per_class`` > 0 keeps only the first that many of each digit. Returns how many were written.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    written: dict[int, int] = {}
    for n, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        if per_class and written.get(int(label), 0) >= per_class:
            continue
        written[int(label)] = written.get(int(label), 0) + 1
        folder = raw / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        img = np.clip(pixels * 255.0 / 16.0 + 0.5, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"digit_{n:04d}.png")
    return sum(written.values())


def run(cfg: DemoConfig) -> DemoResult:
    started = time.perf_counter()
    root = new_run_dir(cfg.out, "demo")
    raw, data, run_dir = root / "raw", root / "data", root / f"digits-{cfg.model}"
    status(f"[1/8] writing scikit-learn's handwritten digits as image folders under {raw}")
    count = write_digits(raw)
    status(f"      {count} images in 10 class folders")
    status("[2/8] prepare: verify, deduplicate, stratified split")
    imgclf.prepare(raw, data, val=0.2, seed=0)
    status("[3/8] train")
    imgclf.train(data, out=run_dir, model=cfg.model, img_size=cfg.img_size, epochs=cfg.epochs,
                 hflip=False, seed=0)
    status("[4/8] evaluate")
    evaluation = imgclf.evaluate(run_dir)
    status("[5/8] predict on a few validation images")
    val_images = sorted((data / "val").glob("*/*.png"))[:: max(1, count // 40)][:5]
    imgclf.predict(run_dir, val_images, topk=3)
    status("[6/8] mistakes")
    imgclf.mistakes(run_dir)
    status("[7/8] enhance: do intensity enhancements rescue the mistakes?")
    imgclf.enhance(run_dir, on="val", figures=8)
    status("[8/8] report")
    report = RunDir(run_dir).report_html
    imgclf.report(run_dir)
    status(f"demo finished in {time.perf_counter() - started:.0f} s: val accuracy "
           f"{evaluation.accuracy:.4f}; run folder {run_dir}; open the report printed above in a browser")
    return DemoResult(root, run_dir, report, float(evaluation.accuracy))
