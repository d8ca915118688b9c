"""The report section that lists every evaluation of a run, each labelled with the data it measured.

The run's own val evaluation of its best checkpoint comes first (it is the one the confusion
matrix and per-class sections show); every other evaluation folder under ``evaluations/`` follows.
Numbers of a checkpoint selected on the split they were measured on carry an "optimistic" badge.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from imgclf.reporting import markup as M
from imgclf.reporting.rundata import Evaluation, RunData, to_float
from imgclf.reporting.sections import section

HEADERS = ("data", "split", "checkpoint", "images", "accuracy", "loss", "macro F1", "ROC AUC", "selection", "folder")
NUMERIC = (False, False, False, True, True, True, True, True, False, False)


def data_cell(summary: dict[str, Any]) -> Markup:
    """The data's short name (own data marked) with its full resolved path under it."""
    path = summary.get("data")
    if not path:
        return M.td("not recorded (evaluated before data folders were kept)", cls="small", sort="")
    name = summary.get("data_name") or path
    own = Markup(' <span class="small">the run\'s own data</span>') if summary.get("own_data") else M.EMPTY
    return M.td(Markup('<strong>{}</strong>{}<div class="fname">{}</div>').format(name, own, path), sort=str(name))


def selection_cell(summary: dict[str, Any]) -> Markup:
    """'optimistic' badge + why, 'held out', or a dash."""
    note = summary.get("selection")
    if summary.get("optimistic"):
        return M.td(Markup('<span class="badge">optimistic</span> {}').format(note or ""), sort="optimistic")
    return M.td(note if note else "–", sort=str(note or ""))


def _folder_cell(ev: Evaluation) -> Markup:
    also = [name for name, path in (("mistakes", ev.folder.mistakes_csv), ("enhance", ev.folder.enhance_summary_csv))
            if path.is_file()]
    where = "the run folder" if ev.relative == "." else M.code(ev.relative + "/")
    extra = Markup('<div class="small">also: {}</div>').format(", ".join(also)) if also else M.EMPTY
    return M.td(M.join([where, extra]), sort=ev.relative)


def _row(ev: Evaluation) -> list[Markup]:
    s = ev.summary or {}
    accuracy = to_float(s.get("accuracy"))
    return [data_cell(s), M.td(s.get("split", "–")), M.td(s.get("checkpoint", "–")),
            M.num_td(to_float(s.get("num_images"))), M.num_td(accuracy, M.fmt_pct(accuracy)),
            M.num_td(to_float(s.get("loss"))), M.num_td(to_float(s.get("macro_f1"))),
            M.num_td(to_float(s.get("roc_auc"))), selection_cell(s), _folder_cell(ev)]


def evaluations_section(data: RunData, run_arg: str) -> Markup:
    """One row per evaluation found in the run folder: data, split, weights, numbers, how trustworthy."""
    names = {f"{ev.relative}/evaluation.json" for ev in data.evaluations} | {"evaluation.json"}
    problems = M.join(M.problem(text) for key, text in data.problems.items() if key in names)
    if not data.evaluations:
        return section("evaluations", "Evaluations", problems + M.hint("the model has not been evaluated",
                                                                       "evaluate", run_arg))
    body = problems + M.table(HEADERS, [_row(ev) for ev in data.evaluations], numeric=NUMERIC)
    body += M.note(Markup("Evaluate other data (each gets its own folder) with {}.").format(
        M.code(M.command_for("evaluate", run_arg, " OTHER_DATA [--split S] [--checkpoint last]"))))
    intro = ("Every evaluation of this run, each in its own folder and labelled with the data it measured. "
             "The best checkpoint was chosen on the run's val split, so its numbers on that split are optimistic; "
             "a held-out test split gives the honest estimate.")
    return section("evaluations", "Evaluations", body, intro)
