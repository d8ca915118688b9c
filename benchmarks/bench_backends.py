"""Inference backends side by side: predict, evaluate and enhance images/s against the plain loop.

One run (resnet18 on the digits at 112 px, trained once and reused), one process, every call
made once untimed (warm-up: imports, auto's probe and export) and then interleaved round by
round (``bench_predict.time_calls``), so all of them see the same machine load:

* plain: the tutorial evaluation loop (ImageFolder, per-image PIL transforms, fp32 eager,
  batch 64, ``num_workers=0``; ``bench_predict.plain_evaluate``) for predict/evaluate, and the
  straightforward per-image enhancement loop (``bench_enhance.straightforward``) for enhance;
* ``imgclf.predict`` / ``imgclf.evaluate`` / ``imgclf.enhance`` with ``backend=`` torch,
  onnxruntime and auto (whole calls: loading, decoding, inference, outputs);
* ``imgclf.predict`` on the run's int8 ONNX export folder (``imgclf export RUN --int8``), and
  what auto picked once that export exists (it joins auto's race when it kept accuracy within
  1 point).

The backend cache (``XDG_CACHE_HOME``) is a fresh folder under WORK, so auto measures on this
machine during its untimed warm-up call. Prints one JSON object and writes
WORK/results/backends.json and backends.md (the table, CPU named).

    python benchmarks/bench_backends.py [--quick] [--repeats 3] [--num-enhance 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import PYTHON, WORK, count_images, digits_data, machine, ratio

BACKENDS = ("torch", "onnxruntime", "auto")


def quiet() -> contextlib.AbstractContextManager:
    return contextlib.redirect_stdout(open(os.devnull, "w"))  # noqa: SIM115 - closed with the process


def accuracy_of_rows(rows: list[dict[str, Any]]) -> float:
    return sum(Path(r["path"]).parent.name == r["top"][0]["class"] for r in rows) / len(rows)


def calls_for(run: Path, data: Path, split: str, enhance_folder: Path,
              int8: Path | None) -> dict[str, Callable[[], float]]:
    """name -> a call returning its accuracy (enhance: accuracy on the original images)."""
    import imgclf
    from bench_enhance import straightforward
    from bench_predict import plain_evaluate
    from imgclf.analysis.enhancements import list_enhancements

    folder = data / split
    calls: dict[str, Callable[[], float]] = {}

    def predict(target: Path, **kw: Any) -> float:
        with quiet():
            return accuracy_of_rows(imgclf.predict(target, folder, topk=1, **kw).predictions)

    def evaluate(**kw: Any) -> float:
        with quiet():
            return float(imgclf.evaluate(run, data, split=split, **kw).accuracy)

    def enhance(**kw: Any) -> float:
        with quiet():
            return float(imgclf.enhance(run, enhance_folder, figures=0, **kw).scores[0].accuracy)

    calls["plain evaluate"] = lambda: plain_evaluate(run, folder)
    calls["plain enhance"] = lambda: straightforward(run, enhance_folder, list_enhancements())["accuracy"]["original"]
    for backend in BACKENDS:
        calls[f"predict {backend}"] = lambda b=backend: predict(run, backend=b)
        calls[f"evaluate {backend}"] = lambda b=backend: evaluate(backend=b)
        calls[f"enhance {backend}"] = lambda b=backend: enhance(backend=b)
    if int8 is not None:
        calls["predict int8 export folder"] = lambda: predict(int8)
    return calls


def ensure_int8(run: Path) -> Path | None:
    """The run's int8 export (made once with the real command); None when it cannot be made."""
    folder = run / "export" / "onnx-best-int8"
    if not (folder / "imgclf-export.json").is_file():
        done = subprocess.run([PYTHON, "-m", "imgclf", "export", str(run), "--int8", "--force"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-1000:], file=sys.stderr)
            return None
    return folder


def to_markdown(res: dict[str, Any]) -> str:
    m, t = res["machine"], res["timings"]
    n, ne, v = res["num_images"], res["num_enhance_images"], res["versions_per_image"]
    plain_eval_s, plain_enh_s = t["plain evaluate"]["median_s"], t["plain enhance"]["median_s"]
    lines = [f"Machine: {m['cpu']}; torch {m['torch']}, onnxruntime {res['onnxruntime']}; "
             f"{res['repeats']} interleaved rounds after one warm-up call each, medians; load average at start "
             f"{', '.join(f'{x:.2f}' for x in m['load_avg_at_start'] or [])}; {res['date']}.", "",
             f"auto picked: {res['auto_choice']}", "",
             f"| job | engine | median s | images/s | vs plain loop | accuracy | target |",
             "|---|---|---|---|---|---|---|"]

    def row(job: str, engine: str, entry: dict[str, Any], images: int, plain_s: float | None, target: str) -> str:
        s = entry["median_s"]
        speedup = f"{ratio(plain_s, s)}x" if plain_s else ""
        return (f"| {job} | {engine} | {s} | {round(images / s, 1) if s else 'n/a'} | {speedup} | "
                f"{entry['accuracy']:.2%} | {target} |")
    lines.append(row(f"evaluate/predict, {n} images at {res['img_size']} px", "plain loop (per-image PIL, fp32 eager)",
                     t["plain evaluate"], n, None, ""))
    for job, images, plain_s in (("predict", n, plain_eval_s), ("evaluate", n, plain_eval_s)):
        for backend in BACKENDS:
            lines.append(row(job, backend, t[f"{job} {backend}"], images, plain_s, ">= 3x"))
    if "predict int8 export folder" in t:
        lines.append(row("predict", "int8 ONNX export folder", t["predict int8 export folder"], n, plain_eval_s, ""))
    lines.append(row(f"enhance, {ne} images x {v} versions", "plain per-image loop", t["plain enhance"], ne, None, ""))
    for backend in BACKENDS:
        lines.append(row("enhance", backend, t[f"enhance {backend}"], ne, plain_enh_s, ">= 3x"))
    lines += ["", "images/s for enhance counts images, each in all its versions. Command: "
              f"`{res['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds after the warm-up round")
    parser.add_argument("--num-enhance", type=int, default=1000, help="images for enhance (all transforms each)")
    parser.add_argument("--split", default="train", help="images to evaluate/predict (train: 80%% of digits)")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 export")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.num_enhance = 1, 40
    cache = WORK / "backend-cache"
    shutil.rmtree(cache, ignore_errors=True)
    os.environ["XDG_CACHE_HOME"] = str(cache)   # auto measures afresh, here
    from bench_enhance import image_set
    from bench_predict import ensure_run, time_calls

    import onnxruntime
    from imgclf.analysis.enhancements import list_enhancements

    data = digits_data(10 if args.quick else 0)
    run = ensure_run(data, 32 if args.quick else 112, 1 if args.quick else 2)
    shutil.rmtree(run / "export", ignore_errors=True)   # auto's export happens in its warm-up call
    int8 = None if args.no_int8 else ensure_int8(run)
    enhance_folder = image_set(data, args.num_enhance)
    names = list_enhancements()
    report: dict[str, Any] = {"benchmark": "backends", "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
                              "onnxruntime": onnxruntime.__version__, "run": str(run),
                              "num_images": count_images(data / args.split), "num_enhance_images": args.num_enhance,
                              "versions_per_image": 1 + len(names), "repeats": args.repeats,
                              "img_size": json.loads((run / "summary.json").read_text())["img_size"],
                              "command": f"python benchmarks/bench_backends.py{' --quick' if args.quick else ''}"}
    timings = time_calls(calls_for(run, data, args.split, enhance_folder, int8), args.repeats, report["num_images"])
    choices = json.loads((cache / "imgclf" / "backends.json").read_text()) if (cache / "imgclf").is_dir() else {}
    report["auto_choice"] = "; ".join(f"{v['choice']} ({', '.join(f'{k} {s}' for k, s in v['images_per_s'].items())}"
                                      f" img/s in its probe)" for v in choices.values()) or "torch (no probe)"
    report["timings"] = timings
    out = WORK / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "backends.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (out / "backends.md").write_text(to_markdown(report), encoding="utf-8")
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
