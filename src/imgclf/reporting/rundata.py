"""Read what a run folder holds, tolerating anything that is missing or unreadable.

The report renders only from these files; it never loads the model. A file that is
absent is ``None`` (the section then says which command fills it); a file that exists
but cannot be read is ``None`` plus a line in ``problems`` that the page shows.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclf.artifacts import EvaluationDir, RunDir

Row = dict[str, str]


@dataclass
class Evaluation:
    """One evaluation folder (the run's own first) and its evaluation.json (None if unreadable)."""

    folder: EvaluationDir
    summary: dict[str, Any] | None
    relative: str                 # the folder inside the run ("." for the run's own)


@dataclass
class Explained:
    """One explain/ folder: its explain.csv rows and explain.json (None if unreadable)."""

    folder: EvaluationDir
    rows: list[Row]
    info: dict[str, Any] | None
    relative: str                 # the evaluation folder inside the run ("." for the run's own)


@dataclass
class RunData:
    """Everything the report shows, as read from one run folder."""

    run: RunDir
    config: dict[str, Any] | None = None
    classes: list[str] | None = None
    metrics: list[Row] | None = None
    summary: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    mistakes: list[Row] | None = None
    enhance_summary: list[Row] | None = None
    explained: list[Explained] = field(default_factory=list)   # every explain/ folder, newest first
    enhance_figures: list[Path] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        if self.summary and self.summary.get("run"):
            return str(self.summary["run"])
        return self.run.root.name

    @property
    def class_names(self) -> list[str]:
        """Class names from classes.json, else summary.json, else evaluation.json."""
        for source in (self.classes, (self.summary or {}).get("classes"), (self.evaluation or {}).get("classes")):
            if isinstance(source, list) and source:
                return [str(c) for c in source]
        return []


def _read_json(path: Path, problems: dict[str, str]) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problems[path.name] = f"could not read {path.name}: {err}"
        return None


def _read_csv(path: Path, problems: dict[str, str]) -> list[Row] | None:
    if not path.is_file():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [dict(row) for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        problems[path.name] = f"could not read {path.name}: {err}"
        return None


def _expect(value: Any, kind: type, name: str, problems: dict[str, str]) -> Any:
    """``value`` if it has the expected JSON shape, else None and a problem line."""
    if value is None or isinstance(value, kind):
        return value
    problems[name] = f"{name} does not have the expected layout (a JSON {kind.__name__})"
    return None


def load_run(root: str | Path) -> RunData:
    """Read every artifact the report can show from the run folder ``root``."""
    run = RunDir(Path(root))
    problems: dict[str, str] = {}
    data = RunData(run=run, problems=problems)
    data.config = _expect(_read_json(run.config_json, problems), dict, run.config_json.name, problems)
    data.classes = _expect(_read_json(run.classes_json, problems), list, run.classes_json.name, problems)
    data.summary = _expect(_read_json(run.summary_json, problems), dict, run.summary_json.name, problems)
    data.evaluation = _expect(_read_json(run.evaluation_json, problems), dict, run.evaluation_json.name, problems)
    data.calibration = _expect(_read_json(run.calibration_json, problems), dict, run.calibration_json.name, problems)
    data.metrics = _read_csv(run.metrics_csv, problems)
    data.mistakes = _read_csv(run.mistakes_csv, problems)
    data.enhance_summary = _read_csv(run.enhance_summary_csv, problems)
    data.explained = _read_explained(run, problems)
    if run.enhance_figures_dir.is_dir():
        data.enhance_figures = sorted(p for p in run.enhance_figures_dir.glob("*.png") if p.is_file())
    data.evaluations = _read_evaluations(run, data.evaluation, problems)
    return data


def _read_evaluations(run: RunDir, own: dict[str, Any] | None, problems: dict[str, str]) -> list[Evaluation]:
    """Every evaluation folder with its evaluation.json; the run's own is the one already read."""
    found = []
    for folder in run.list_evaluations():
        relative = folder.root.relative_to(run.root).as_posix()
        if folder == run:
            found.append(Evaluation(folder, own, relative))
            continue
        name, unreadable = f"{relative}/{folder.evaluation_json.name}", dict[str, str]()
        summary = _expect(_read_json(folder.evaluation_json, unreadable), dict, folder.evaluation_json.name,
                          unreadable)
        problems.update({name: text.replace(folder.evaluation_json.name, name, 1) for text in unreadable.values()})
        found.append(Evaluation(folder, summary, relative))
    return found


def _read_explained(run: RunDir, problems: dict[str, str]) -> list[Explained]:
    """Every explain/ folder (the run's own and under evaluations/), the most recently written first."""
    folders = [run] + ([EvaluationDir(p) for p in sorted(run.evaluations_dir.iterdir()) if p.is_dir()]
                       if run.evaluations_dir.is_dir() else [])
    found = []
    for folder in folders:
        if not folder.explain_csv.is_file():
            continue
        relative = folder.root.relative_to(run.root).as_posix()
        rows = _read_csv(folder.explain_csv, problems)
        info = _expect(_read_json(folder.explain_json, problems), dict, folder.explain_json.name, problems)
        if rows is not None:
            found.append(Explained(folder, rows, info, relative))
    return sorted(found, key=lambda e: -e.folder.explain_csv.stat().st_mtime)


def inside_run(run: RunDir, relative: str) -> Path | None:
    """``run.root / relative`` if that stays inside the run folder and is a file, else None."""
    if not relative:
        return None
    root = run.root.resolve()
    path = (root / relative).resolve()
    if path != root and root in path.parents and path.is_file():
        return path
    return None


def to_float(value: Any) -> float | None:
    """A number from a CSV/JSON cell, or None for blanks, junk, NaN and infinities."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None
