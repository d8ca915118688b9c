"""The scale benchmark's verdicts, Markdown table and log-log plot (from the JSON of bench_scale.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODES = ("memory", "disk_cold", "disk_warm", "stream", "auto_half_budget")


def _sizes(result: dict[str, Any]) -> list[int]:
    return sorted(int(n) for n in result["sizes"])


def _px(result: dict[str, Any]) -> list[str]:
    first = result["sizes"][str(_sizes(result)[0])]
    return sorted((k for k in first if k.endswith("px")), key=lambda k: int(k[:-2]))


def _get(entry: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(entry, dict) or key not in entry:
            return None
        entry = entry[key]
    return entry


def _per_image_ratio(result: dict[str, Any], keys: tuple[str, ...], count: str = "n") -> float | None:
    """(time per image at the largest N) / (time per image at the smallest N)."""
    sizes = _sizes(result)
    if len(sizes) < 2:
        return None
    values = []
    for n in (sizes[0], sizes[-1]):
        entry = result["sizes"][str(n)]
        seconds = _get(entry, *keys)
        images = n if count == "n" else _get(entry, *keys[:-1], count)
        if not seconds or not images:
            return None
        values.append(seconds / images)
    return round(values[1] / values[0], 3)


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each scale target: the measured figure and whether it holds (None: not measured)."""
    sizes, px = _sizes(result), _px(result)
    out: dict[str, dict[str, Any]] = {}

    def verdict(name: str, figure: Any, holds: bool | None) -> None:
        out[name] = {"figure": figure, "holds": holds}

    within = lambda r, tol: None if r is None else abs(r - 1) <= tol   # noqa: E731
    r = _per_image_ratio(result, ("prepare", "wall_s"))
    verdict("prepare: time per image, largest N / smallest N (within 25%)", r, within(r, 0.25))
    for size in px:
        for mode in ("memory", "disk_warm", "stream"):
            r = _per_image_ratio(result, (size, mode, "steady_epoch_s"), "train_images")
            verdict(f"{size} {mode}: steady epoch time per image, largest / smallest N (within 25%)", r, within(r, 0.25))
        r = _per_image_ratio(result, (size, "infer", "predict_s"), "images")
        verdict(f"{size} predict: time per image, largest / smallest N (within 25%)", r, within(r, 0.25))
        if len(sizes) >= 2:
            lo, hi = (_get(result["sizes"][str(n)], size, "stream", "tree_pss_mb") for n in (sizes[0], sizes[-1]))
            r = round(hi / lo, 3) if lo and hi else None
            verdict(f"{size} streaming: peak PSS, largest / smallest N (within 20%)", r, within(r, 0.20))
            fit = _memory_fit(result, size)
            verdict(f"{size} memory: peak PSS = constant + N x bytes (slope within 25% of C*S*S)", fit,
                    None if fit is None else abs(fit["slope_bytes_per_image"] / fit["bytes_per_image"] - 1) <= 0.25)
        autos = [(_get(e, size, "auto_half_budget"), _get(e, size, "disk_warm", "tree_pss_mb"))
                 for e in (result["sizes"][str(n)] for n in sizes)]
        figure = [(a["mode"], round(a["tree_pss_mb"] - disk, 1), round(a["cache_gb"] * 1024, 1))
                  for a, disk in autos if a and disk]
        verdict(f"{size} auto with --cache-gb at half the need: (mode, peak PSS minus the disk run's MB, budget MB)",
                figure, all(mode != "memory" and extra <= budget for mode, extra, budget in figure) if figure else None)
    ten_k = min(sizes, key=lambda n: abs(n - 10_000))
    for size in px:
        cold = _get(result["sizes"][str(ten_k)], size, "disk_cold", "launch_to_first_step_s")
        warm = _get(result["sizes"][str(ten_k)], size, "disk_warm", "launch_to_first_step_s")
        r = round(cold / warm, 2) if cold and warm else None
        verdict(f"{size} second run with the disk cache at N = {ten_k:,}: launch -> first step, first / second "
                "(at least 10x)", r, None if r is None else r >= 10)
    big = px[-1]
    for n in sizes:
        mem = _get(result["sizes"][str(n)], big, "memory", "steady_img_per_s")
        stream = _get(result["sizes"][str(n)], big, "stream", "steady_img_per_s")
        r = round(stream / mem, 3) if mem and stream else None
        verdict(f"{big} streaming / memory steady speed, {result['settings']['model']}, N = {n:,} (at least 0.9)",
                r, None if r is None else r >= 0.9)
    for model, res in (_get(result["sizes"][str(sizes[0])], "ratio") or {}).items():
        r = res["stream_vs_memory"]
        figure = f"{r} (pairs {', '.join(map(str, res['pair_ratios']))})" if "pair_ratios" in res else r
        verdict(f"{big} streaming / memory steady speed, {model}, N = {sizes[0]:,} (at least 0.9; median of pairs)",
                figure, r >= 0.9)
    return out


def _memory_fit(result: dict[str, Any], size: str) -> dict[str, float] | None:
    """Least-squares line of memory-mode peak PSS against the number of images prepared."""
    points = [(float(_get(e, size, "memory", "train_images") + _get(e, size, "memory", "val_images")),
               float(_get(e, size, "memory", "tree_pss_mb")) * 1024 ** 2)
              for e in result["sizes"].values() if _get(e, size, "memory", "tree_pss_mb")]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    side = int(size[:-2])
    return {"slope_bytes_per_image": round(slope), "bytes_per_image": 3 * side * side,
            "constant_mb": round((mean_y - slope * mean_x) / 1024 ** 2, 1)}


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("launch -> first step, s", ("launch_to_first_step_s",)),
    ("first epoch incl. decode, s", ("first_epoch_s",)),
    ("steady epoch, s", ("steady_epoch_s",)),
    ("steady epoch, img/s", ("steady_img_per_s",)),
    ("peak RSS largest process, MB", ("max_rss_mb",)),
    ("peak PSS whole tree, MB", ("tree_pss_mb",)),
)


def write_markdown(result: dict[str, Any]) -> str:
    sizes, m = _sizes(result), result["machine"]
    head = "| measure | " + " | ".join(f"N = {n:,}" for n in sizes) + " |"
    lines = [f"**Scale: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['imgclf_runtime']}; "
             f"load average at start {m['load_avg_at_start']}; model {result['settings']['model']}, batch "
             f"{result['settings']['batch_size']}**", "", head, "|---|" + "---|" * len(sizes)]

    def row(label: str, *keys: str) -> None:
        lines.append(f"| {label} | " + " | ".join(_fmt(_get(result["sizes"][str(n)], *keys)) for n in sizes) + " |")

    row("prepare: wall s", "prepare", "wall_s")
    row("prepare: img/s", "prepare", "img_per_s")
    row("prepare: peak PSS whole tree, MB", "prepare", "tree_pss_mb")
    for size in _px(result):
        for mode in MODES[:4]:
            for label, keys in ROWS:
                if _get(result["sizes"][str(sizes[0])], size, mode, *keys) is not None:
                    row(f"{size} {mode}: {label}", size, mode, *keys)
        row(f"{size} auto, --cache-gb half of need: mode chosen", size, "auto_half_budget", "mode")
        row(f"{size} auto, --cache-gb half of need: peak PSS MB", size, "auto_half_budget", "tree_pss_mb")
        row(f"{size} evaluate img/s (whole call)", size, "infer", "evaluate_img_per_s")
        row(f"{size} predict img/s (whole call)", size, "infer", "predict_img_per_s")
        row(f"{size} evaluate+predict process peak PSS, MB", size, "infer", "tree_pss_mb")
        row(f"{size} val accuracy (memory run)", size, "memory", "val_acc")
    floor = _get(result, "startup_floor", "import_train_command_s")
    lines += ["", f"Startup floor (python + imports of the train command, no data): {_fmt(floor)} s.",
              "", "| target | figure | holds |", "|---|---|---|"]
    for name, v in result["targets"].items():
        holds = "n/a" if v["holds"] is None else ("yes" if v["holds"] else "no")
        lines.append(f"| {name} | {_fmt(v['figure'])} | {holds} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = _sizes(result)
    big = _px(result)[-1]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5))
    series_t = {"prepare (wall)": ("prepare", "wall_s"), f"epoch {big} memory": (big, "memory", "steady_epoch_s"),
                f"epoch {big} disk": (big, "disk_warm", "steady_epoch_s"),
                f"epoch {big} streaming": (big, "stream", "steady_epoch_s"),
                f"first epoch {big} memory (decode incl.)": (big, "memory", "first_epoch_s"),
                f"predict {big} (val split)": (big, "infer", "predict_s")}
    series_m = {"prepare": ("prepare", "tree_pss_mb"), f"train {big} memory": (big, "memory", "tree_pss_mb"),
                f"train {big} disk": (big, "disk_warm", "tree_pss_mb"),
                f"train {big} streaming": (big, "stream", "tree_pss_mb"),
                f"evaluate+predict {big}": (big, "infer", "tree_pss_mb")}
    for ax, series, label in ((ax_t, series_t, "seconds"), (ax_m, series_m, "peak PSS of the process tree, MB")):
        for name, keys in series.items():
            points = [(n, _get(result["sizes"][str(n)], *keys)) for n in sizes]
            points = [(n, v) for n, v in points if v]
            if points:
                ax.plot(*zip(*points), marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("images (N)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if len(sizes) >= 2:
        ref = _get(result["sizes"][str(sizes[0])], "prepare", "wall_s")
        if ref:
            ax_t.plot(sizes, [ref * n / sizes[0] for n in sizes], "k--", lw=0.8, label="slope 1 (linear)")
            ax_t.legend(fontsize=7)
    ax_t.set_title("time against N (log-log)")
    ax_m.set_title("memory against N (log-log)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
