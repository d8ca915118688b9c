"""Scale: how time and memory grow with the number of images.

For each N: generate N JPEGs at about 256 px (``scale_data.py``), ``imgclf prepare --format keep``,
then per resolution ``imgclf train`` in every cache mode, each a separate process whose peak memory
is measured (``procmem.py``: largest process's peak RSS, whole tree's peak PSS, DataLoader
workers included), then ``evaluate`` and ``predict`` on the val split (``scale_infer.py``).

    python benchmarks/bench_scale.py --sizes 1000,10000,100000   # the full measurement (quiet machine)
    python benchmarks/bench_scale.py --sizes 1000,10000           # what fits a shared machine
    python benchmarks/bench_scale.py --sizes 300 --img-sizes 64 --ratio-models ''   # smoke test

Train runs per N and resolution (``--model``, default the cheap ``scale_model:TinyNet``):
memory (cache deleted first: decode + build included), disk cold (cache deleted, 1 epoch), disk
warm (the second run: launch -> first step without decoding), off (streaming), and auto with
``--cache-gb`` at half of what the decoded images need (must pick disk and stay under it). At the
smallest N, ``--ratio-models`` train in memory and streaming mode at the largest resolution
(``--ratio-pairs`` pairs back to back, median ratio): the streaming-vs-memory speed of real models.
Writes WORK/results/scale.{json,md,png}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench_train import _first_eval_wall_time
from common import HERE, PYTHON, REPO, WORK, machine, show_cmd
from procmem import run_measured
from scale_data import generate

SCALE = WORK / "scale"
RESULTS = WORK / "results"
CACHE_FOLDER = ".imgclf-cache"


def env() -> dict[str, str]:
    paths = [str(REPO / "src"), str(HERE), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def measured(argv: list[str], log: Path) -> dict[str, Any]:
    out = run_measured(argv, log, env(), REPO)
    out["command"] = show_cmd(argv)
    return out


def prepare(raw: Path, data: Path, n: int) -> dict[str, Any]:
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(data.parent / f".{data.name}.imgclf-partial", ignore_errors=True)   # no head start
    out = measured([PYTHON, "-m", "imgclf", "prepare", str(raw), str(data), "--format", "keep"],
                   SCALE / "logs" / f"prepare-{n}.log")
    out["img_per_s"] = round(n / out["wall_s"], 1)
    return out


def train(data: Path, run: Path, log: Path, flags: list[str]) -> dict[str, Any]:
    shutil.rmtree(run, ignore_errors=True)
    out = measured([PYTHON, "-m", "imgclf", "train", str(data), "--out", str(run), *flags], log)
    with open(run / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["img_per_s"]]
    derived = json.loads((run / "config.json").read_text(encoding="utf-8"))["derived"]
    images = derived["train_images"]
    epoch_s = [images / float(r["img_per_s"]) for r in rows]
    first_eval = _first_eval_wall_time(run / "tb")
    setup = first_eval - out["launched"] - float(rows[0]["elapsed_s"]) if first_eval else None
    out.update(mode=derived.get("cache_mode"), train_images=images, val_images=derived["val_images"],
               launch_to_first_step_s=round(setup, 2) if setup is not None else None,
               first_epoch_s=round(setup + epoch_s[0], 2) if setup is not None else None,
               steady_epoch_s=round(epoch_s[-1], 2) if len(epoch_s) > 1 else None,
               steady_img_per_s=round(float(rows[-1]["img_per_s"]), 1) if len(epoch_s) > 1 else None,
               val_acc=float(rows[-1]["val_acc"]))
    out.pop("launched")
    return out


def size_runs(data: Path, n: int, size: int, args: argparse.Namespace) -> dict[str, Any]:
    common = ["--model", args.model, "--img-size", str(size), "--batch-size", str(args.batch_size), "--seed", "0",
              "--hflip"]
    runs = SCALE / "runs" / f"{n}"
    logs = SCALE / "logs"
    cache = data / CACHE_FOLDER
    need_gib = n * 3 * size * size / 1024 ** 3
    out: dict[str, Any] = {}
    for name, mode, epochs, cold in (("memory", "memory", args.epochs, True), ("disk_cold", "disk", 1, True),
                                     ("disk_warm", "disk", args.epochs, False), ("stream", "off", args.epochs, False)):
        if cold:
            shutil.rmtree(cache, ignore_errors=True)
        flags = [*common, "--cache", mode, "--epochs", str(epochs)]
        out[name] = train(data, runs / f"{size}-{name}", logs / f"train-{n}-{size}-{name}.log", flags)
        print(f"  {n} images, {size} px, {name}: {out[name]['wall_s']} s", file=sys.stderr)
    budget = round(max(need_gib / 2, 0.001), 4)
    out["auto_half_budget"] = train(data, runs / f"{size}-auto", logs / f"train-{n}-{size}-auto.log",
                                    [*common, "--cache", "auto", "--cache-gb", str(budget), "--epochs", "1"])
    out["auto_half_budget"]["cache_gb"] = budget
    log = logs / f"infer-{n}-{size}.log"
    out["infer"] = measured([PYTHON, str(HERE / "scale_infer.py"), str(runs / f"{size}-memory"), str(data)], log)
    out["infer"].update(json.loads(log.read_text(encoding="utf-8").strip().splitlines()[-1]))
    return out


def ratio_runs(data: Path, n: int, size: int, models: list[str], batch_size: int, pairs: int) -> dict[str, Any]:
    """Streaming vs memory steady epoch of real models (2 epochs each, warm cache for memory): ``pairs``
    memory/streaming pairs run back to back; the figure is the median of the pairs' ratios."""
    out: dict[str, Any] = {}
    for model in models:
        flags = ["--model", model, "--img-size", str(size), "--batch-size", str(batch_size), "--epochs", "2",
                 "--seed", "0", "--hflip"]
        runs = [{mode: train(data, SCALE / "runs" / f"ratio-{model}-{mode}",
                             SCALE / "logs" / f"ratio-{n}-{model}-{mode}.log", [*flags, "--cache", mode])
                 for mode in ("memory", "off")} for _ in range(pairs)]
        ratios = [round(r["off"]["steady_img_per_s"] / r["memory"]["steady_img_per_s"], 3) for r in runs]
        res = {**runs[-1], "pairs": [{m: r[m]["steady_img_per_s"] for m in ("memory", "off")} for r in runs],
               "pair_ratios": ratios, "stream_vs_memory": statistics.median(ratios)}
        out[model] = res
        print(f"  ratio {model}: stream/memory = {res['stream_vs_memory']}", file=sys.stderr)
    return out


def startup_floor() -> dict[str, Any]:
    """Launch -> the train command's modules imported (torch, torchvision, imgclf): the fixed cost of any
    run, which no cache removes; median of 3."""
    walls = [measured([PYTHON, "-c", "import imgclf.commands.train"], SCALE / "logs" / "startup.log")["wall_s"]
             for _ in range(3)]
    return {"import_train_command_s": sorted(walls)[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="numbers of images (comma-separated)")
    parser.add_argument("--img-sizes", default="64,112", help="training resolutions (comma-separated)")
    parser.add_argument("--model", default="scale_model:TinyNet", help="model of the scale runs")
    parser.add_argument("--ratio-models", default="small_cnn,resnet18,auto",
                        help="models for streaming vs memory at the smallest N and largest resolution ('' = none; "
                             "auto: the default recipe's choice)")
    parser.add_argument("--ratio-pairs", type=int, default=3, help="memory/streaming pairs per ratio model (median)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the memory, disk-warm and streaming runs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--name", default="scale", help="results file name under WORK/results/")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    img_sizes = [int(s) for s in args.img_sizes.split(",")]
    started = time.time()
    result: dict[str, Any] = {"machine": machine(), "settings": vars(args), "sizes": {},
                              "startup_floor": startup_floor()}
    for n in sizes:
        raw, data = SCALE / f"raw-{n}", SCALE / f"data-{n}"
        generate(raw, n)
        entry: dict[str, Any] = {"prepare": prepare(raw, data, n)}
        print(f"{n} images: prepare {entry['prepare']['wall_s']} s", file=sys.stderr)
        for size in img_sizes:
            entry[f"{size}px"] = size_runs(data, n, size, args)
        result["sizes"][str(n)] = entry
        result["load_avg_now"] = list(os.getloadavg())
        save(result, args.name)
    if args.ratio_models:   # last: the scale table first
        n = min(sizes)
        result["sizes"][str(n)]["ratio"] = ratio_runs(SCALE / f"data-{n}", n, max(img_sizes),
                                                       args.ratio_models.split(","), args.batch_size,
                                                       args.ratio_pairs)
    result["elapsed_min"] = round((time.time() - started) / 60, 1)
    save(result, args.name)
    print((RESULTS / f"{args.name}.md").read_text(encoding="utf-8"))


def save(result: dict[str, Any], name: str) -> None:
    from scale_report import plot, targets, write_markdown

    RESULTS.mkdir(parents=True, exist_ok=True)
    result["targets"] = targets(result)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (RESULTS / f"{name}.md").write_text(write_markdown(result), encoding="utf-8")
    plot(result, RESULTS / f"{name}.png")


if __name__ == "__main__":
    main()
