"""``imgclf stats DATA``: class counts per split, image sizes, mean/std of the train split."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.config import StatsConfig
from imgclf.console import print_table, status, warn
from imgclf.data.stats import dataset_stats


@dataclass
class Result:
    stats: dict[str, Any]
    exit_code: int = 0


def run(cfg: StatsConfig) -> Result:
    status(f"reading {cfg.data}")
    stats = dataset_stats(Path(cfg.data), cfg.max_images)
    if cfg.json:
        print(json.dumps(stats, indent=2), file=sys.stdout, flush=True)
    else:
        print_stats(stats)
    for message in stats["warnings"]:
        warn(message)
    return Result(stats)


def print_stats(stats: dict[str, Any]) -> None:
    """The three tables: counts per class and split, image sizes, normalisation."""
    splits = list(stats["splits"])
    rows = [(cls, *(c.get(s, 0) for s in splits), sum(c.values())) for cls, c in stats["counts"].items()]
    rows.append(("total", *(sum(r[i] for r in rows) for i in range(1, len(splits) + 2))))
    print_table(("class", *splits, "total"), rows)
    sizes = stats["sizes"]
    if sizes.get("num_images"):
        print()
        print_table(("size", "min", "median", "max"),
                    [(dim, *(sizes[dim][k] for k in ("min", "median", "max"))) for dim in ("width", "height")])
        common = ", ".join(f"{c['size']} ({c['count']})" for c in sizes["most_common"])
        print(f"most common sizes: {common}")
    norm = stats["normalization"]
    print()
    print_table(("channels", "mean", "std"),
                [(name, _floats(norm[name]["mean"]), _floats(norm[name]["std"])) for name in ("rgb", "gray")])
    print(f"(mean/std on the 0..1 scale over {norm['num_images']} {norm['split']} images: "
          "the values for Normalize)")


def _floats(values: list[float]) -> str:
    return ", ".join(f"{v:.4f}" for v in values)
