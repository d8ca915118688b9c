"""Training: the plain loop vs ``imgclf train`` on the same data, model, resolution and batch size.

Each run is a separate process (whole-process wall time is measured around it). Per image size:
the plain loop and ``imgclf train`` for every seed (interleaved), then model-only throughput
(synthetic tensors in memory) in this process. Then "time to accuracy": the tutorial recipe vs
``imgclf train DATA`` with its defaults. Prints one JSON object.

    python benchmarks/bench_train.py                 # full: all digits, 112 px + auto size, 5 epochs, 3 seeds
    python benchmarks/bench_train.py --quick         # tiny smoke test
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from common import (HERE, PYTHON, WORK, digits_data, fresh_dir, last_json, machine, mean, median,
                    model_only_throughput, ratio, run_timed, show_cmd)

PLAIN = str(HERE / "plain_loop.py")


def plain_run(data: Path, img_size: int, epochs: int, batch_size: int, lr: float, seed: int,
              log: Path) -> dict[str, Any]:
    argv = [PYTHON, PLAIN, "--data", str(data), "--img-size", str(img_size), "--epochs", str(epochs),
            "--batch-size", str(batch_size), "--lr", str(lr), "--seed", str(seed), "--no-hflip"]
    launched, wall, stdout = run_timed(argv, log)
    out = last_json(stdout)
    first = out["epochs"][0]
    steady = [e["train_s"] for e in out["epochs"][1:]] or [first["train_s"]]
    return {"command": show_cmd(argv), "process_wall_s": round(wall, 2), "train_img_per_s": out["train_img_per_s"],
            "epoch_s": median(steady), "eval_save_s": median([e["eval_s"] for e in out["epochs"]]),
            "first_eval_at_s": round(first["done_at"] - launched, 2),
            "setup_s": round(first["done_at"] - launched - first["train_s"] - first["eval_s"], 2),
            "val_acc": out["final_val_acc"], "eval_img_per_s": out["eval_img_per_s"], "threads": out["threads"]}


def _first_eval_wall_time(tb_dir: Path) -> float | None:
    """time.time() of the first val_acc event in the run's TensorBoard files (None if unreadable)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(tb_dir)).Reload().Scalars("val_acc")
        return min(e.wall_time for e in events)
    except Exception:
        return None


def imgclf_run(data: Path, out: Path, flags: list[str], log: Path) -> dict[str, Any]:
    argv = [PYTHON, "-m", "imgclf", "train", str(data), "--out", str(fresh_dir(out)), *flags]
    launched, wall, _ = run_timed(argv, log)
    with open(out / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["img_per_s"]]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    derived = json.loads((out / "config.json").read_text(encoding="utf-8"))["derived"]
    images = derived["train_images"]
    epoch_s = [images / float(r["img_per_s"]) for r in rows]          # train loop time of each epoch
    counted = epoch_s[1:] if len(epoch_s) >= 2 else epoch_s            # same rule as the plain loop
    elapsed = [0.0] + [float(r["elapsed_s"]) for r in rows]
    # between two evaluation rows: train loop + evaluation + checkpoint saves; minus the train loop
    overhead = [elapsed[i + 1] - elapsed[i] - epoch_s[i] for i in range(1, len(epoch_s))]
    first_eval = _first_eval_wall_time(out / "tb")
    return {"command": show_cmd(argv), "process_wall_s": round(wall, 2),
            "train_img_per_s": round(images * len(counted) / sum(counted), 1) if counted else None,
            "epoch_s": median(counted), "eval_save_s": median(overhead),
            "first_eval_at_s": round(first_eval - launched, 2) if first_eval else None,
            "setup_s": round(first_eval - launched - float(rows[0]["elapsed_s"]), 2) if first_eval else None,
            "val_acc": summary["final"]["val_acc"], "img_size": summary["img_size"],
            "runtime": derived["runtime"], "train_images": images, "cached": derived["cached"], "epochs": summary["epochs"]}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the timings, mean of the accuracies, over seeds."""
    keys = ("train_img_per_s", "epoch_s", "eval_save_s", "first_eval_at_s", "setup_s", "process_wall_s")
    out: dict[str, Any] = {k: median([r[k] for r in runs]) for k in keys}
    out["val_acc_mean"] = mean([r["val_acc"] for r in runs])
    out["val_acc_each"] = [r["val_acc"] for r in runs]
    out["commands"] = [r["command"] for r in runs]
    return out


def same_settings(data: Path, img_size: int, epochs: int, batch_size: int, lr: float, seeds: list[int],
                  model_steps: int, with_plain: bool = True, model: str = "resnet18") -> dict[str, Any]:
    plain, ours = [], []
    for seed in seeds:
        tag = f"s{img_size}-seed{seed}"
        if with_plain:
            plain.append(plain_run(data, img_size, epochs, batch_size, lr, seed, WORK / "logs" / f"plain-{tag}.log"))
        flags = ["--model", model, "--img-size", str(img_size), "--batch-size", str(batch_size),
                 "--epochs", str(epochs), "--seed", str(seed), "--no-hflip"]
        ours.append(imgclf_run(data, WORK / "runs" / f"train-{tag}", flags, WORK / "logs" / f"imgclf-{tag}.log"))
    # the model alone, as imgclf ran it: the precision it picked, one epoch of steps to warm up (the epoch
    # imgclf's rate leaves out), then as many timed steps as its counted epochs (at least model_steps)
    picked = next(p for p in ("bf16", "fp16", "fp32") if p in ours[0]["runtime"])
    spe = -(-ours[0]["train_images"] // batch_size)
    model_only = model_only_throughput(img_size, batch_size, steps=max(model_steps, spe * (epochs - 1)),
                                       warmup=spe, precision=picked, model_name=model)
    model_only_fp32 = model_only_throughput(img_size, batch_size, steps=model_steps, precision="fp32", model_name=model)
    model_only_fp32_cl = model_only_throughput(img_size, batch_size, steps=model_steps, precision="fp32",
                                               channels_last=True, model_name=model)
    p, o = summarize(plain), summarize(ours)
    return {"model": model, "img_size": img_size, "epochs": epochs, "batch_size": batch_size, "seeds": seeds, "plain": p,
            "imgclf": o, "imgclf_runtime": ours[0]["runtime"], "model_only": model_only,
            "model_only_fp32": model_only_fp32, "model_only_fp32_channels_last": model_only_fp32_cl,
            "train_speedup": ratio(o["train_img_per_s"], p["train_img_per_s"]),
            "epoch_speedup": ratio(p["epoch_s"], o["epoch_s"]),
            "first_eval_speedup": ratio(p["first_eval_at_s"], o["first_eval_at_s"]),
            "acc_diff_points": round(100 * (o["val_acc_mean"] - p["val_acc_mean"]), 2) if plain else None,
            "end_to_end_vs_model_only": ratio(o["train_img_per_s"], model_only["img_per_s"])}


def time_to_accuracy(data: Path, seeds: list[int], img_size: int, epochs: int, batch_size: int,
                     lr: float) -> dict[str, Any]:
    plain, ours = [], []
    for seed in seeds:
        plain.append(plain_run(data, img_size, epochs, batch_size, lr, seed, WORK / "logs" / f"tta-plain-{seed}.log"))
        ours.append(imgclf_run(data, WORK / "runs" / f"tta-seed{seed}", ["--seed", str(seed)],
                               WORK / "logs" / f"tta-imgclf-{seed}.log"))
    p, o = summarize(plain), summarize(ours)
    return {"plain_recipe": {"img_size": img_size, "epochs": epochs, "lr": lr, "momentum": 0.9,
                             "batch_size": batch_size},
            "imgclf_recipe": {"img_size": ours[0]["img_size"], "epochs": ours[0]["epochs"], "flags": "defaults"},
            "seeds": seeds, "plain": p, "imgclf": o,
            "wall_speedup": ratio(p["process_wall_s"], o["process_wall_s"])}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--per-class", type=int, default=0, help="digits per class (0 = all 1,797 images)")
    parser.add_argument("--sizes", default="112,0", help="image sizes; 0 = the size imgclf picks by default")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01, help="plain-loop lr for the same-settings comparison")
    parser.add_argument("--model", default="resnet18",
                        help="imgclf's model in the same-settings runs and the model-only measurement (the plain "
                             "loop is always resnet18; with another model, pass --no-plain)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--model-steps", type=int, default=30, help="timed steps of the model-only measurement")
    parser.add_argument("--no-plain", action="store_true",
                        help="skip the plain loop (e.g. on a GPU: imgclf end-to-end vs model-only only)")
    parser.add_argument("--tta-seeds", default="0,1,2", help="seeds of the time-to-accuracy runs ('' = skip)")
    args = parser.parse_args(argv)
    if args.quick:
        args.per_class, args.sizes, args.epochs, args.seeds = args.per_class or 10, "32", 2, "0"
        args.model_steps, args.tta_seeds = 3, "0"
    from imgclf.data.folders import list_split
    from imgclf.data.loading import auto_img_size

    data = digits_data(args.per_class)
    seeds = [int(s) for s in args.seeds.split(",") if s != ""]
    auto = auto_img_size(list_split(data, "train")[0])
    results: dict[str, Any] = {"benchmark": "train", "machine": machine(), "data": str(data),
                               "auto_img_size": auto, "same_settings": []}
    for size in [int(s) for s in args.sizes.split(",")]:
        results["same_settings"].append(same_settings(data, size or auto, args.epochs, args.batch_size, args.lr,
                                                      seeds, args.model_steps, not args.no_plain, args.model))
    tta_seeds = [int(s) for s in args.tta_seeds.split(",") if s != ""]
    if tta_seeds:
        results["time_to_accuracy"] = time_to_accuracy(data, tta_seeds, 32, 5, args.batch_size, 0.001)
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
