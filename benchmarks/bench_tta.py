"""Time to accuracy: the classic tutorial loop against ``imgclf train DATA`` with its defaults only.

For every data set (benchmarks/datasets.py) and seed, side by side in one run: the plain loop
(torchvision resnet18 from scratch, SGD lr 0.001 momentum 0.9, per-image PIL transforms, fp32,
``num_workers=0``, ``--epochs`` epochs at the data's own size, flips for photographs) and
``imgclf train DATA --seed S``, each a separate process timed from launch. Every evaluation is
placed on the wall clock of its process (plain: the end of each epoch's evaluation; imgclf: the
TensorBoard event of each val_acc), so the curves are accuracy against whole-process seconds,
start-up, imports and decoding included.

Per data set: the target is the plain loop's final val accuracy (mean over seeds); imgclf's time
to target is the first evaluation at or above it (median over seeds), against the plain loop's
whole-process time (median). Prints one JSON object; ``--plot`` writes the curves.

    python benchmarks/bench_tta.py                       # all data sets, 3 seeds
    python benchmarks/bench_tta.py --datasets tiny --seeds 0,1,2
    python benchmarks/bench_tta.py --quick               # a smoke test
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path
from typing import Any

from common import HERE, PYTHON, WORK, fresh_dir, last_json, machine, run_timed, show_cmd
from datasets import NAMES, dataset

PLAIN = str(HERE / "plain_loop.py")
NATIVE = {"digits": 32, "letters": 32, "photos": 64, "tiny": 64}   # the plain loop's resolution per data set
FLIPS = {"photos", "tiny"}                                        # the tutorial flips photographs, not glyphs


def plain_curve(data: Path, name: str, epochs: int, seed: int, log: Path, img_size: int = 0) -> dict[str, Any]:
    argv = [PYTHON, PLAIN, "--data", str(data), "--img-size", str(img_size or NATIVE[name]), "--epochs", str(epochs),
            "--lr", "0.001", "--momentum", "0.9", "--batch-size", "64", "--seed", str(seed)]
    argv += [] if name in FLIPS else ["--no-hflip"]
    launched, wall, stdout = run_timed(argv, log)
    out = last_json(stdout)
    return {"command": show_cmd(argv), "wall_s": round(wall, 2), "img_size": img_size or NATIVE[name],
            "curve": [(round(e["done_at"] - launched, 2), e["val_acc"]) for e in out["epochs"]],
            "final": out["final_val_acc"]}


def tensorboard_curve(tb_dir: Path, launched: float) -> list[tuple[float, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb_dir)).Reload().Scalars("val_acc")
    return [(round(e.wall_time - launched, 2), round(e.value, 5)) for e in sorted(events, key=lambda e: e.step)]


def imgclf_curve(data: Path, name: str, seed: int, log: Path, flags: list[str]) -> dict[str, Any]:
    out = fresh_dir(WORK / "runs" / f"tta-{name}-seed{seed}")
    argv = [PYTHON, "-m", "imgclf", "train", str(data), "--out", str(out), "--seed", str(seed), *flags]
    launched, wall, _ = run_timed(argv, log)
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    with (out / "metrics.csv").open(encoding="utf-8") as f:
        losses = [float(row["train_loss"]) for row in csv.DictReader(f) if row.get("train_loss")]
    return {"command": show_cmd(argv), "wall_s": round(wall, 2), "curve": tensorboard_curve(out / "tb", launched),
            "final": summary["final"]["val_acc"], "recipe": config["derived"].get("recipe"),
            "epochs": config["epochs"], "img_size": config["derived"]["img_size"],
            # the blow-up guard: the largest logged train loss over the first one (end of epoch 1)
            "train_loss_max_over_first": round(max(losses) / losses[0], 3) if losses else None}


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    """Seconds from launch to the first evaluation at or above ``target`` (None: never)."""
    return next((t for t, acc in curve if acc >= target - 1e-9), None)


def summarize(name: str, plain: list[dict[str, Any]], ours: list[dict[str, Any]]) -> dict[str, Any]:
    target = statistics.fmean(r["final"] for r in plain)
    reached = [time_to(r["curve"], target) for r in ours]
    plain_wall = statistics.median(r["wall_s"] for r in plain)
    ours_wall = statistics.median(r["wall_s"] for r in ours)
    done = [t for t in reached if t is not None]
    median_reach = statistics.median(done) if len(done) == len(reached) else None
    return {"dataset": name, "target": round(target, 5),
            "plain_final_mean": round(target, 5), "plain_final_each": [r["final"] for r in plain],
            "imgclf_final_mean": round(statistics.fmean(r["final"] for r in ours), 5),
            "imgclf_final_each": [r["final"] for r in ours],
            "plain_wall_s": plain_wall, "imgclf_wall_s": ours_wall,
            "imgclf_time_to_target_s": median_reach, "imgclf_time_to_target_each": reached,
            "time_to_target_share": round(median_reach / plain_wall, 3) if median_reach else None,
            "points_over_plain": round(100 * (statistics.fmean(r["final"] for r in ours) - target), 2),
            "plain": plain, "imgclf": ours}


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    for ax, res in zip(axes[0], results):
        for runs, color, label in ((res["plain"], "#9aa1ab", "plain loop"), (res["imgclf"], "#2458a6", "imgclf")):
            for i, run in enumerate(runs):
                xs, ys = zip(*run["curve"]) if run["curve"] else ((), ())
                ax.plot(xs, [100 * y for y in ys], color=color, lw=1.6, marker="o", ms=2.5,
                        label=label if i == 0 else None)
        ax.axhline(100 * res["target"], color="#d62728", lw=0.8, ls="--", label="plain final (mean)")
        ax.set(title=res["dataset"], xlabel="seconds since launch", ylabel="val accuracy, %")
        ax.set_ylim(max(0, 100 * res["target"] - 40), 100)
        ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def pct(value: float | None) -> str:
    return "never" if value is None else f"{100 * value:.1f}%"


def markdown(out: dict[str, Any]) -> str:
    """The BENCHMARKS.md table of one run (or of several, combined)."""
    m = out["machine"]
    loads = out.get("load_avg_at_start_each") or [m["load_avg_at_start"]]
    lines = [f"**Time to accuracy** ({m['cpu']}; torch {m['torch']}; load average (1 min) at the start of each run "
             f"{', '.join(f'{x[0]:.2f}' for x in loads if x)}; imgclf `train DATA` with "
             f"{' '.join(out['imgclf_flags']) or 'defaults only'}; medians of wall times, means of accuracies)",
             "", "| data set | seeds | plain: epochs, px | plain final | plain whole process, s | imgclf reaches it at, s "
             "| share of plain time | imgclf final | points over plain | imgclf whole process, s "
             "| imgclf model, px, epochs | imgclf max train loss / first |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["datasets"]:
        first = r["imgclf"][0]
        recipe = first.get("recipe") or {}
        share = "n/a" if r["time_to_target_share"] is None else f"{100 * r['time_to_target_share']:.1f}%"
        reach = "never" if r["imgclf_time_to_target_s"] is None else f"{r['imgclf_time_to_target_s']:g}"
        loss_ratio = max((o.get("train_loss_max_over_first") or 0) for o in r["imgclf"])
        lines.append(f"| {r['dataset']} | {', '.join(map(str, r.get('seeds', out['seeds'])))} "
                     f"| {r.get('plain_epochs', out['plain_epochs'])}, {r['plain'][0].get('img_size', '?')} "
                     f"| {pct(r['plain_final_mean'])} ({', '.join(pct(a) for a in r['plain_final_each'])}) "
                     f"| {r['plain_wall_s']:g} | {reach} | {share} | {pct(r['imgclf_final_mean'])} "
                     f"({', '.join(pct(a) for a in r['imgclf_final_each'])}) | {r['points_over_plain']:+.1f} "
                     f"| {r['imgclf_wall_s']:g} | {recipe.get('model', '?')}, {first['img_size']}, {first['epochs']} "
                     f"| {loss_ratio:.2f} |")
    return "\n".join(lines) + "\n"


def write_results(out: dict[str, Any], plot_path: Path) -> None:
    plot(out["datasets"], plot_path)
    plot_path.with_suffix(".md").write_text(markdown(out), encoding="utf-8")
    plot_path.with_suffix(".json").write_text(json.dumps(out, indent=1), encoding="utf-8")


def combine(paths: list[Path], plot_path: Path) -> dict[str, Any]:
    """One table and plot from several runs of this script; runs of the same data set (other seeds)
    are pooled and summarized again, each row keeping its seeds and plain epochs."""
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    pooled: dict[str, dict[str, Any]] = {}
    for run in runs:
        for r in run["datasets"]:
            entry = pooled.setdefault(r["dataset"], {"plain": [], "imgclf": [], "seeds": [],
                                                     "plain_epochs": run["plain_epochs"]})
            entry["plain"] += r["plain"]
            entry["imgclf"] += r["imgclf"]
            entry["seeds"] += run["seeds"]
    datasets = [{**summarize(name, e["plain"], e["imgclf"]), "seeds": e["seeds"], "plain_epochs": e["plain_epochs"]}
                for name, e in pooled.items()]
    out = {**runs[0], "seeds": sorted({s for run in runs for s in run["seeds"]}), "plot": str(plot_path),
           "combined_from": [str(p) for p in paths], "datasets": datasets,
           "load_avg_at_start_each": [run["machine"]["load_avg_at_start"] for run in runs]}
    write_results(out, plot_path)
    print(json.dumps(out, indent=1))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,letters,photos,tiny")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the plain loop")
    parser.add_argument("--plain-img-size", type=int, default=0,
                        help="the plain loop's resolution (default: the data set's own, 32 or 64 px)")
    parser.add_argument("--imgclf-flags", default="", help="extra flags for imgclf train (default: none)")
    parser.add_argument("--plot", type=Path, default=WORK / "results" / "tta.png")
    parser.add_argument("--quick", action="store_true", help="tiny only, one seed, 2 plain epochs")
    parser.add_argument("--combine", type=Path, nargs="+", metavar="JSON",
                        help="no runs: merge the data sets of earlier results into one table and plot (--plot)")
    args = parser.parse_args(argv)
    if args.combine:
        return combine(args.combine, args.plot)
    if args.quick:
        args.datasets, args.seeds, args.epochs = "tiny", "0", 2
    names = [n for n in args.datasets.split(",") if n]
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; from {NAMES}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    flags = args.imgclf_flags.split()
    started_on = machine()   # the load average before anything ran
    results = []
    for name in names:
        data = dataset(name)
        plain, ours = [], []
        for seed in seeds:   # interleaved: a drift in machine speed hits both alike
            plain.append(plain_curve(data, name, args.epochs, seed, WORK / "logs" / f"tta-plain-{name}-{seed}.log",
                                     args.plain_img_size))
            ours.append(imgclf_curve(data, name, seed, WORK / "logs" / f"tta-imgclf-{name}-{seed}.log", flags))
        results.append(summarize(name, plain, ours))
    out = {"benchmark": "time_to_accuracy", "machine": started_on, "seeds": seeds, "plain_epochs": args.epochs,
           "imgclf_flags": flags, "plot": str(args.plot), "datasets": results}
    write_results(out, args.plot)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
