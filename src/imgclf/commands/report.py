"""``imgclf report RUN``: write RUN/report.html, one self-contained page about the run.

Renders only from the files in the run folder (never loads the model); sections whose
files are missing say which command fills them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imgclf.artifacts import RunDir
from imgclf.config import ReportConfig
from imgclf.console import status, warn
from imgclf.io import remove_stale_temps, write_text


@dataclass(frozen=True)
class Result:
    """Where the report was written, and what could not be read (shown on the page too)."""

    path: Path
    problems: tuple[str, ...] = field(default=())
    exit_code: int = 0


def run(cfg: ReportConfig) -> Result:
    """Write ``cfg.run/report.html`` atomically and print its path to stdout."""
    from imgclf.reporting.html import render_report
    from imgclf.reporting.rundata import load_run

    run_dir = RunDir(Path(cfg.run))
    run_dir.require_trained()
    remove_stale_temps(run_dir.root)
    status(f"writing the report of {run_dir.root}")
    data = load_run(run_dir.root)
    problems = tuple(data.problems.values())
    for line in problems:
        warn(line)
    path = run_dir.report_html
    write_text(path, render_report(data, str(cfg.run)))
    print(path, flush=True)
    return Result(path=path, problems=problems)
