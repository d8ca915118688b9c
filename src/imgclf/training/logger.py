"""Metrics out: metrics.csv (rewritten atomically), TensorBoard events, a compact console table."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from imgclf.artifacts import METRICS_COLUMNS
from imgclf.console import status
from imgclf.io import write_csv

CONSOLE_COLUMNS = (("step", "{:>7d}"), ("epoch", "{:>6.2f}"), ("train_loss", "{:>10.4f}"),
                   ("val_loss", "{:>8.4f}"), ("val_acc", "{:>7.4f}"), ("lr", "{:>9.2e}"),
                   ("img_per_s", "{:>9.0f}"))


class MetricsLogger:
    """One row per evaluation, to CSV + TensorBoard + the console, all with the same numbers."""

    def __init__(self, csv_path: Path, tensorboard_dir: Path, resume_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.csv_path = csv_path
        self.rows: list[dict[str, Any]] = []
        if resume_step is not None and csv_path.is_file():
            with open(csv_path, newline="", encoding="utf-8") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.writer = SummaryWriter(str(tensorboard_dir), purge_step=resume_step)
        self._header_shown = False

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        columns = METRICS_COLUMNS + tuple(k for k in row if k not in METRICS_COLUMNS)   # e.g. multi-label val_map
        write_csv(self.csv_path, columns, [[r.get(c, "") for c in columns] for r in self.rows])
        for key in ("train_loss", "val_loss", "val_acc", "lr", "img_per_s"):
            if row.get(key) not in (None, ""):
                self.writer.add_scalar(key, float(row[key]), int(row["step"]))
        self.writer.flush()
        self._print(row)

    def _print(self, row: dict[str, Any]) -> None:
        if not self._header_shown:
            status("  ".join(f"{name:>{len(fmt.format(0) if 'd' in fmt else fmt.format(0.0))}}"
                             for name, fmt in CONSOLE_COLUMNS))
            self._header_shown = True
        cells = []
        for name, fmt in CONSOLE_COLUMNS:
            value = row.get(name)
            width = len(fmt.format(0) if "d" in fmt else fmt.format(0.0))
            cells.append(fmt.format(value) if isinstance(value, (int, float)) else f"{'-':>{width}}")
        status("  ".join(cells))

    def close(self) -> None:
        self.writer.close()
