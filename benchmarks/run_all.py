"""Run every benchmark and write one JSON + one Markdown table (ready for BENCHMARKS.md).

    python benchmarks/run_all.py --quick     # smoke test: tiny data and settings
    python benchmarks/run_all.py             # the full measurement (see BENCHMARKS.md)

Each benchmark runs as its own process, one after the other; the results go to
WORK/results/<quick|full>.json and .md (WORK = benchmarks/.work or $IMGCLF_BENCH_WORK).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bench_backends import to_markdown as backends_markdown
from bench_tta import markdown as tta_markdown
from common import HERE, PYTHON, WORK, last_json, machine, run_timed, show_cmd

BENCHES = ("train", "predict", "enhance", "backends", "tta")


def fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:g}{suffix}" if isinstance(value, (int, float)) else str(value)


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def train_tables(res: dict[str, Any]) -> list[str]:
    lines = []
    for s in res["same_settings"]:
        p, o, m = s["plain"], s["imgclf"], s["model_only"]
        lines += [f"**Training, {s.get('model', 'resnet18')} at {s['img_size']} px, batch {s['batch_size']}, {s['epochs']} epochs, "
                  f"seeds {s['seeds']}** (plain: fp32; imgclf: {s['imgclf_runtime']})", "",
                  "| measure | plain loop | imgclf | imgclf vs plain | target |", "|---|---|---|---|---|",
                  f"| train images/s, steady state (median) | {fmt(p['train_img_per_s'])} | {fmt(o['train_img_per_s'])} "
                  f"| {fmt(s['train_speedup'], 'x')} | >= 5x |",
                  f"| epoch time, s (median, training only) | {fmt(p['epoch_s'])} | {fmt(o['epoch_s'])} "
                  f"| {fmt(s['epoch_speedup'], 'x')} | |",
                  f"| per epoch outside training, s (plain: evaluation; imgclf: evaluation + checkpoints) "
                  f"| {fmt(p['eval_save_s'])} | {fmt(o['eval_save_s'])} | | |",
                  f"| launch -> first evaluation done, s (incl. startup, decode) | {fmt(p['first_eval_at_s'])} "
                  f"| {fmt(o['first_eval_at_s'])} | {fmt(s['first_eval_speedup'], 'x')} | imgclf epoch 1 <= plain epoch |",
                  f"| launch -> training starts, s (startup, imports, decode, model) | {fmt(p['setup_s'])} "
                  f"| {fmt(o['setup_s'])} | | |",
                  f"| whole process, s (median) | {fmt(p['process_wall_s'])} | {fmt(o['process_wall_s'])} | | |",
                  f"| val accuracy after {s['epochs']} epochs (mean of seeds) | {pct(p['val_acc_mean'])} "
                  f"| {pct(o['val_acc_mean'])} | {fmt(s['acc_diff_points'])} points | within 1 point |",
                  f"| model-only images/s ({m['runtime']}) | | {fmt(m['img_per_s'])} "
                  f"| end-to-end = {pct(s['end_to_end_vs_model_only'])} of it | >= 85% |",
                  *[f"| model-only images/s ({r['runtime']}), for reference | {fmt(r['img_per_s'])} | | | |"
                    for r in (s.get("model_only_fp32"), s.get("model_only_fp32_channels_last")) if r], ""]
    t = res.get("time_to_accuracy")
    if t:
        p, o = t["plain"], t["imgclf"]
        pr, orc = t["plain_recipe"], t["imgclf_recipe"]
        lines += [f"**Time to accuracy, seeds {t['seeds']}** (whole-process wall time around the command)", "",
                  "| recipe | wall s (median) | val accuracy (mean) | per seed | target |", "|---|---|---|---|---|",
                  f"| plain: SGD lr {pr['lr']} momentum {pr['momentum']}, {pr['epochs']} epochs at {pr['img_size']} px, "
                  f"batch {pr['batch_size']} | {fmt(p['process_wall_s'])} | {pct(p['val_acc_mean'])} "
                  f"| {', '.join(pct(a) for a in p['val_acc_each'])} | about 93% in about 25 s |",
                  f"| `imgclf train DATA` defaults ({orc['epochs']} epochs at {orc['img_size']} px) "
                  f"| {fmt(o['process_wall_s'])} | {pct(o['val_acc_mean'])} "
                  f"| {', '.join(pct(a) for a in o['val_acc_each'])} | >= 98% in less wall time |", ""]
    return lines


def predict_table(res: dict[str, Any]) -> list[str]:
    lines = [f"**Evaluate / predict, {res['num_images']} images at {res['img_size']} px, median of "
             f"{res['repeats']} whole calls after one warm-up call**", "",
             "| call | median s | images/s | vs plain | cold first call s | accuracy | target |",
             "|---|---|---|---|---|---|---|"]
    for name, label, speed in (("plain", "plain loop (fp32, batch 64, num_workers=0)", None),
                               ("imgclf_evaluate", "`imgclf.evaluate` (+ metrics, CSV, PNG)", "evaluate_speedup"),
                               ("imgclf_predict", "`imgclf.predict`", "predict_speedup")):
        r = res[name]
        lines.append(f"| {label} | {fmt(r['median_s'])} | {fmt(r['img_per_s'])} | "
                     f"{fmt(res[speed], 'x') if speed else ''} | {fmt(r['cold_s'])} | {pct(r['accuracy'])} | "
                     f"{'>= 5x' if speed else ''} |")
    return lines + [""]


def enhance_table(res: dict[str, Any]) -> list[str]:
    if "skipped" in res:
        return [f"**Enhance**: skipped ({res['skipped']})", ""]
    o, p, f = res["imgclf"], res["straightforward"], res["imgclf_figures"]
    return [f"**Enhance, {res['num_images']} images x {res['versions_per_image']} versions "
            f"(original + {', '.join(res['transforms'])}), figures excluded**", "",
            "| approach | seconds | image-versions/s | speedup | target |", "|---|---|---|---|---|",
            f"| straightforward per image (fp32, one forward per image) | {fmt(p['seconds'])} "
            f"| {fmt(p['img_versions_per_s'])} | | |",
            f"| `imgclf.enhance(run, images, figures=0)` | {fmt(o['seconds'])} | {fmt(o['img_versions_per_s'])} "
            f"| {fmt(res['speedup'], 'x')} | >= 20x |",
            f"| figures, timed separately | {fmt(f['seconds'])} for {f['figures']} | "
            f"{fmt(f['extra_s_per_figure'])} s per figure | | |", ""]


def backends_table(res: dict[str, Any]) -> list[str]:
    return ["**Inference backends (torch, onnxruntime, auto) against the plain loop**", "",
            backends_markdown(res), ""]


def tta_table(res: dict[str, Any]) -> list[str]:
    return [tta_markdown(res), f"![accuracy against wall-clock seconds]({res['plot']})", ""]


def commands_section(ran: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["Commands:", ""]
    for name, entry in ran.items():
        lines.append(f"- `{entry['command']}` ({entry['wall_s']:.0f} s)")
        res = entry["result"]
        for s in res.get("same_settings", []):
            lines += [f"  - `{c}`" for c in s["plain"]["commands"] + s["imgclf"]["commands"]]
        t = res.get("time_to_accuracy")
        if t:
            lines += [f"  - `{c}`" for c in t["plain"]["commands"] + t["imgclf"]["commands"]]
    return lines + [""]


def to_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}; Python {m['python']}, "
             f"torch {m['torch']}; imgclf picks `{m['imgclf_runtime']}`; load average at start "
             f"{', '.join(f'{x:.2f}' for x in m['load_avg_at_start'] or [])}; mode: {report['mode']}; "
             f"{report['date']}.", ""]
    ran = report["benchmarks"]
    renderers = (("train", train_tables), ("predict", predict_table), ("enhance", enhance_table),
                 ("backends", backends_table), ("tta", tta_table))
    for name, render in renderers:
        if name in ran:
            lines += render(ran[name]["result"]) if "error" not in ran[name] else \
                [f"**{name}**: failed: {ran[name]['error']}", ""]
    return "\n".join(lines + commands_section({k: v for k, v in ran.items() if "error" not in v}))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (a smoke test, not a measurement)")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of " + ",".join(BENCHES))
    parser.add_argument("--out", type=Path, default=WORK / "results")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    report: dict[str, Any] = {"mode": mode, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
                              "benchmarks": {}}
    for name in args.only.split(","):
        argv_ = [PYTHON, str(HERE / f"bench_{name}.py"), *(["--quick"] if args.quick else [])]
        print(f"running {show_cmd(argv_)} ...", flush=True)
        try:
            _, wall, stdout = run_timed(argv_, WORK / "logs" / f"run_all-{name}.log")
            report["benchmarks"][name] = {"command": show_cmd(argv_), "wall_s": round(wall, 1),
                                          "result": last_json(stdout)}
            print(f"  done in {wall:.0f} s", flush=True)
        except RuntimeError as err:   # one failing benchmark does not lose the others
            report["benchmarks"][name] = {"command": show_cmd(argv_), "error": str(err)}
            print(f"  FAILED: {err}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{mode}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    markdown = to_markdown(report)
    (args.out / f"{mode}.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"wrote {args.out / (mode + '.json')} and {args.out / (mode + '.md')}")
    return report


if __name__ == "__main__":
    main()
