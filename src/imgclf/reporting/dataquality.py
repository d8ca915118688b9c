"""Report sections about the data rather than the model: K-fold label issues, near-duplicate groups.

Label issues come from RUN/label-issues/<split>/ (``imgclf label-issues --run RUN``); near-duplicate
groups from the prepare_report.json of the data the run was trained on (``imgclf prepare``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from markupsafe import Markup

from imgclf.artifacts import LabelIssueFiles
from imgclf.reporting import markup as M
from imgclf.reporting.rundata import Row, RunData, to_float
from imgclf.reporting.sections import section

MAX_ISSUES_LISTED = 30
MAX_GROUPS_LISTED = 30
MAX_MEMBERS_LISTED = 6
PREPARE_REPORT = "prepare_report.json"


def _read(path: Path, problems: list[str]) -> Any:
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text(encoding="utf-8"))
        with open(path, newline="", encoding="utf-8") as f:
            return [dict(row) for row in csv.DictReader(f)]
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as err:
        problems.append(f"could not read {path}: {err}")
        return None


def _issues_table(rows: list[Row]) -> Markup:
    shown = rows[:MAX_ISSUES_LISTED]
    body = [[M.num_td(to_float(r.get("rank"))), M.td(Path(r.get("path", "")).name, "name"), M.td(r.get("given", "")),
             M.num_td(to_float(r.get("self_confidence"))), M.td(r.get("suggested", "")),
             M.num_td(to_float(r.get("suggested_prob")))] for r in shown]
    caption = f"Most likely label errors ({len(shown)} of {len(rows)})" if len(rows) > len(shown) else ""
    return M.table(["rank", "file", "given label", "p(given)", "suggested", "p(suggested)"], body,
                   caption=caption, numeric=[True, False, False, True, False, True])


def _one_split(files: LabelIssueFiles, problems: list[str]) -> Markup:
    summary = _read(files.summary_json, problems) or {}
    rows = _read(files.issues_csv, problems) or []
    summary = summary if isinstance(summary, dict) else {}
    text = (f"{len(rows):,} of {summary.get('num_images', '?')} images of the {summary.get('split', '?')} split "
            f"flagged, by {summary.get('folds', '?')} {summary.get('model', '?')} models each trained on the other "
            f"folds (out-of-fold accuracy {M.fmt_pct(to_float(summary.get('out_of_fold_accuracy')))}).")
    body = [Markup("<h3>{} split</h3>").format(files.root.name), M.note(text) if summary else M.EMPTY]
    if files.gallery_png.is_file():
        body.append(M.figure(M.image_bytes(files.gallery_png), "likely label errors",
                             Markup("Flagged images, least confident in their given label first ({}).").format(
                                 M.code(files.gallery_png.name))))
    body.append(_issues_table(rows) if rows else M.note("No label issue found.", "good"))
    return M.join(body)


def label_issues_section(data: RunData, run_arg: str) -> Markup:
    """Likely label errors in whole splits, from out-of-fold probabilities (label-issues --run)."""
    found = data.run.list_label_issues()
    intro = ("Each image is judged by a model that never trained on it (K-fold), and confident learning flags "
             "the labels those probabilities contradict (cleanlab's rule). Check them by eye; fix the labels in "
             "the data and train again.")
    if not found:
        return section("label-issues", "Label issues in the data", M.hint(
            "the training split has not been checked for label errors", "label-issues --run", run_arg), intro)
    problems: list[str] = []
    body = M.join(_one_split(files, problems) for files in found)
    return section("label-issues", "Label issues in the data", M.join(map(M.problem, problems)) + body, intro)


def _group_row(group: dict[str, Any]) -> list[Markup]:
    images = [i for i in group.get("images", []) if isinstance(i, dict)]
    listed = Markup("<br>").join(Markup("{} <small>({}, {}, {} bits)</small>").format(
        i.get("path", ""), i.get("class", ""), i.get("split", ""), i.get("bits", ""))
        for i in images[:MAX_MEMBERS_LISTED])
    if len(images) > MAX_MEMBERS_LISTED:
        listed += Markup("<br><small>and {} more</small>").format(len(images) - MAX_MEMBERS_LISTED)
    splits = [str(s) for s in group.get("splits", [])]
    return [M.num_td(len(images)), M.td(", ".join(splits), "warn" if len(splits) > 1 else ""), M.td(listed)]


def near_duplicates_section(data: RunData, run_arg: str) -> Markup:
    """Near-duplicate groups found by ``prepare`` in the run's data, and whether any straddles splits."""
    title = "Near-duplicates in the data"
    intro = Markup("Resized, re-encoded or lightly edited copies found by {} (perceptual hash). A group split "
                   "between train and val would inflate the val accuracy.").format(M.code("imgclf prepare"))
    folder = data.run.own_data()
    problems: list[str] = []
    report = _read(folder / PREPARE_REPORT, problems) if folder is not None else None
    if not isinstance(report, dict) or "near_duplicates" not in report:
        where = M.code(str(folder)) if folder is not None else "the run's data"
        return section("near-duplicates", title, M.join(map(M.problem, problems)) + M.note(Markup(
            "<strong>Not available:</strong> {} has no near-duplicate list. Run {} (it looks for near-duplicates "
            "by default) and train on DST to fill this section.").format(where, M.code("imgclf prepare SRC DST")),
            "hint"), intro)
    listed = report["near_duplicates"]
    groups = [g for g in listed if isinstance(g, dict)] if isinstance(listed, list) else []
    settings = report.get("settings") if isinstance(report.get("settings"), dict) else {}
    across = sum(len(g.get("splits", [])) > 1 for g in groups)
    text = Markup("{} group(s) of {} images within {} bits ({}); {}").format(
        f"{len(groups):,}", f"{sum(len(g.get('images', [])) for g in groups):,}", settings.get("near_distance", "?"),
        settings.get("near_duplicates", "?"), Markup('<span class="warn">{} span several splits.</span>').format(across)
        if across else "none spans two splits.")
    body = M.note(text)
    if groups:
        shown = sorted(groups, key=lambda g: (-len(g.get("splits", [])), -len(g.get("images", []))))
        shown = shown[:MAX_GROUPS_LISTED]
        body += M.table(["images", "splits", "members (class, split, bits from the first)"],
                        [_group_row(g) for g in shown], numeric=[True, False, False],
                        caption=f"{len(shown)} of {len(groups)} groups, those across splits first"
                        if len(groups) > len(shown) else "")
    return section("near-duplicates", title, body, intro)
