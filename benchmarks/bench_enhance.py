"""Enhancement analysis: ``imgclf.enhance`` vs the straightforward per-image approach.

Both re-predict N images (default 1,000, labelled by their class folder) in their original
form and under every registered enhancement (src/imgclf/analysis/enhancements.py).

* imgclf: ``imgclf.enhance(run, folder, figures=0)``, the whole call (loading the run,
  decoding, enhancing, batched inference, scoring, summary.csv, per_image.csv and the summary
  chart). Per-image figures are excluded from the ratio: a second call with ``figures=F`` is
  timed separately and reported as seconds per figure.
* straightforward: for each image, PIL open + Resize + CenterCrop to the run's size, then for
  each transform apply it with numpy on the grey plane (the registry's own curve / histogram /
  CLAHE functions, one image at a time), ToTensor + Normalize, one DataLoader over that
  image's versions and one fp32 forward pass per image (``model.eval()``, ``torch.no_grad()``).

Digits are grey, so both see the same pixels; the per-transform accuracies are printed side
by side as a check. Prints one JSON object.

    python benchmarks/bench_enhance.py [--quick] [--num-images 1000] [--run RUN]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset
from torchvision import transforms as T

from bench_predict import ensure_run
from common import WORK, digits_data, machine, ratio

NEEDS = "imgclf.enhance (src/imgclf/commands/enhance.py) and the registry in src/imgclf/analysis/enhancements.py"


def image_set(data: Path, num_images: int) -> Path:
    """A folder <class>/<file> with num_images images taken round-robin over the classes (cached)."""
    folder = WORK / "enhance-images" / f"{data.name}-{num_images}"
    if folder.is_dir():
        return folder
    per_class: dict[str, list[Path]] = {}
    for split in ("train", "val"):
        for c in sorted((data / split).iterdir()):
            per_class.setdefault(c.name, []).extend(sorted(c.glob("*.png")))
    picked, n = [], 0
    while len(picked) < num_images and any(n < len(v) for v in per_class.values()):
        picked += [(name, files[n]) for name, files in per_class.items() if n < len(files)]
        n += 1
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for name, path in picked[:num_images]:
        (tmp / name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, tmp / name / path.name)
    tmp.rename(folder)
    return folder


def enhance_plane(plane: np.ndarray, name: str) -> np.ndarray:
    """One (H, W) uint8 grey plane through one enhancement with its default parameters."""
    from imgclf.analysis.enhancements import LEVELS, get_enhancement, to_lut

    spec = get_enhancement(name)
    if spec.kind == "curve":
        return to_lut(spec.fn(LEVELS, **spec.defaults))[plane]
    if spec.kind == "histogram":
        hist = np.bincount(plane.ravel(), minlength=256)[None]
        return to_lut(spec.fn(hist, **spec.defaults))[0][plane]
    return spec.fn(plane[None], **spec.defaults)[0]


def straightforward(run: Path, folder: Path, names: list[str]) -> dict[str, Any]:
    """Per image: decode, resize, every transform, one DataLoader, one forward pass. Accuracy per version."""
    from imgclf.engine.checkpoint import load_weights

    start = time.perf_counter()
    state_dict, meta = load_weights(run / "checkpoints" / "best.safetensors")
    size, classes = int(meta["img_size"]), list(meta["classes"])
    model = torchvision.models.resnet18(weights=None, num_classes=len(classes))
    model.load_state_dict(state_dict)
    model.eval()
    geometry = T.Compose([T.Resize(size), T.CenterCrop(size)])
    to_input = T.Compose([T.ToTensor(), T.Normalize(meta["mean"], meta["std"])])
    files = sorted(folder.glob("*/*.png"))
    correct = np.zeros(1 + len(names), dtype=np.int64)
    for path in files:
        img = geometry(Image.open(path).convert("RGB"))
        grey = np.asarray(img.convert("L"))
        versions = [img] + [Image.fromarray(enhance_plane(grey, n)).convert("RGB") for n in names]
        batch = TensorDataset(torch.stack([to_input(v) for v in versions]))
        with torch.no_grad():
            for (inputs,) in DataLoader(batch, batch_size=len(versions), num_workers=0):
                preds = model(inputs).argmax(1).numpy()
        correct += preds == classes.index(path.parent.name)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 3), "accuracy": dict(zip(["original", *names],
                                                              (correct / len(files)).round(5).tolist()))}


def imgclf_enhance(run: Path, folder: Path, figures: int) -> tuple[float, dict[str, float]]:
    import imgclf

    start = time.perf_counter()
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        result = imgclf.enhance(run, folder, figures=figures)
    seconds = time.perf_counter() - start
    return seconds, {s.transform: round(s.accuracy, 5) for s in result.scores if s.accuracy is not None}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--num-images", type=int, default=1000)
    parser.add_argument("--img-size", type=int, default=112, help="size of the run trained for this")
    parser.add_argument("--figures", type=int, default=20, help="figures of the separately timed call")
    parser.add_argument("--run", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.num_images, args.img_size, args.figures = 40, 32, 2
    try:
        import imgclf
        from imgclf.analysis.enhancements import list_enhancements
        assert hasattr(imgclf, "enhance")
    except (ImportError, AssertionError):
        print(json.dumps({"benchmark": "enhance", "skipped": f"needs {NEEDS}"}))
        return {}
    data = digits_data(0 if args.num_images > 400 else 10)
    run = args.run or ensure_run(data, args.img_size, 1 if args.quick else 2)
    folder = image_set(data, args.num_images)
    names = list_enhancements()
    imgclf_enhance(run, folder, 0)                     # warm-up: imports, first-touch allocations
    ours_s, ours_acc = imgclf_enhance(run, folder, 0)
    figures_s, _ = imgclf_enhance(run, folder, args.figures)
    plain = straightforward(run, folder, names)
    num = sum(1 for _ in folder.glob("*/*.png"))
    result = {"benchmark": "enhance", "machine": machine(), "run": str(run), "num_images": num,
              "transforms": names, "versions_per_image": 1 + len(names),
              "imgclf": {"seconds": round(ours_s, 3), "accuracy": ours_acc,
                         "img_versions_per_s": round(num * (1 + len(names)) / ours_s, 1)},
              "imgclf_figures": {"figures": args.figures, "seconds": round(figures_s, 3),
                                 "extra_s_per_figure": round((figures_s - ours_s) / max(args.figures, 1), 3)},
              "straightforward": {**plain, "img_versions_per_s": round(num * (1 + len(names)) / plain["seconds"], 1)},
              "speedup": ratio(plain["seconds"], ours_s)}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
