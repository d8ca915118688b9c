"""Evaluate / predict throughput: the plain loop vs ``imgclf.evaluate`` and ``imgclf.predict``.

All three are timed as whole in-process calls on the same images with the same trained
weights: the plain loop builds ImageFolder (per-image PIL transforms, the run's mean/std),
an fp32 resnet18, loads the run's weights and runs batch 64, ``num_workers=0``, ``model.eval()``
+ ``torch.no_grad()``. ``imgclf.evaluate`` includes loading the run, decoding, inference,
metrics and writing predictions.csv, evaluation.json and the confusion-matrix PNG;
``imgclf.predict`` includes loading, decoding, inference and printing the table (to /dev/null).
Excluded: one untimed warm-up call of each (module imports, first-touch allocations), reported
separately as ``cold_s``. Prints one JSON object.

    python benchmarks/bench_predict.py [--quick] [--run RUN]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch.utils.data import DataLoader

from common import WORK, count_images, digits_data, machine, median, ratio
from plain_loop import make_transforms


def ensure_run(data: Path, img_size: int, epochs: int) -> Path:
    """A trained run to predict with (trained once, then reused)."""
    import imgclf

    run = WORK / "runs" / f"predict-{data.name}-{img_size}px"
    if not (run / "summary.json").is_file():
        with contextlib.redirect_stdout(sys.stderr):
            imgclf.train(data, out=run, model="resnet18", img_size=img_size, epochs=epochs, hflip=False, seed=0,
                         force=True)
    return run


def plain_evaluate(run: Path, folder: Path, batch_size: int = 64) -> float:
    """Accuracy of the run's weights on an ImageFolder, the tutorial way (fp32, per-image PIL)."""
    from imgclf.engine.checkpoint import load_weights

    state_dict, meta = load_weights(run / "checkpoints" / "best.safetensors")
    _, val_tf = make_transforms(int(meta["img_size"]), False, tuple(meta["mean"]), tuple(meta["std"]))
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=val_tf)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    model = torchvision.models.resnet18(weights=None, num_classes=len(meta["classes"]))
    model.load_state_dict(state_dict)
    model.eval()
    correct = 0
    with torch.no_grad():
        for inputs, labels in loader:
            probs = torch.softmax(model(inputs), dim=1)
            correct += int((probs.argmax(1) == labels).sum())
    return correct / len(dataset)


def imgclf_evaluate(run: Path, data: Path, split: str) -> float:
    import imgclf

    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        return float(imgclf.evaluate(run, data, split=split).accuracy)


def imgclf_predict(run: Path, folder: Path) -> float:
    """Accuracy of ``imgclf.predict``'s top-1 against the class folder names."""
    import imgclf

    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        rows = imgclf.predict(run, folder, topk=1).predictions
    return sum(Path(r["path"]).parent.name == r["top"][0]["class"] for r in rows) / len(rows)


def time_calls(calls: dict[str, Callable[[], float]], repeats: int, num_images: int) -> dict[str, Any]:
    """Warm-up once each, then ``repeats`` rounds interleaved; median seconds and images/s."""
    out: dict[str, Any] = {}
    for name, call in calls.items():
        start = time.perf_counter()
        acc = call()
        out[name] = {"cold_s": round(time.perf_counter() - start, 3), "accuracy": round(acc, 5), "times_s": []}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            out[name]["times_s"].append(round(time.perf_counter() - start, 3))
    for entry in out.values():
        entry["median_s"] = median(entry["times_s"])
        entry["img_per_s"] = round(num_images / entry["median_s"], 1)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--per-class", type=int, default=0, help="digits per class (0 = all)")
    parser.add_argument("--img-size", type=int, default=112)
    parser.add_argument("--split", default="train", help="images to evaluate/predict (train: 80%% of digits)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--run", type=Path, default=None, help="use this run instead of training one")
    parser.add_argument("--train-epochs", type=int, default=2, help="epochs of the run trained for this")
    args = parser.parse_args(argv)
    if args.quick:
        args.per_class, args.img_size, args.repeats, args.train_epochs = args.per_class or 10, 32, 2, 1
    data = digits_data(args.per_class)
    run = args.run or ensure_run(data, args.img_size, args.train_epochs)
    folder = data / args.split
    num_images = count_images(folder)
    calls = {"plain": lambda: plain_evaluate(run, folder),
             "imgclf_evaluate": lambda: imgclf_evaluate(run, data, args.split),
             "imgclf_predict": lambda: imgclf_predict(run, folder)}
    timings = time_calls(calls, args.repeats, num_images)
    result = {"benchmark": "predict", "machine": machine(), "run": str(run), "images": str(folder),
              "num_images": num_images, "img_size": json.loads((run / "summary.json").read_text())["img_size"],
              "repeats": args.repeats, "torch_threads": torch.get_num_threads(), **timings,
              "evaluate_speedup": ratio(timings["imgclf_evaluate"]["img_per_s"], timings["plain"]["img_per_s"]),
              "predict_speedup": ratio(timings["imgclf_predict"]["img_per_s"], timings["plain"]["img_per_s"])}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
