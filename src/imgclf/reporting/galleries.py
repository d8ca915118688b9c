"""The report sections with images: mistakes, likely label errors, enhancement.

Galleries are capped (a run can have thousands of mistakes) and the page says how many
of how many it shows; the CSV files in the run folder list them all.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from markupsafe import Markup

from imgclf.reporting import markup as M
from imgclf.reporting.rundata import Row, RunData, inside_run, to_float
from imgclf.reporting.sections import section

MAX_MISTAKES_SHOWN = 48
MAX_LABEL_ERRORS_SHOWN = 24
MAX_ENHANCE_FIGURES_SHOWN = 12
MAX_PAIRS_SHOWN = 15
HEATMAP_SIDE_PX = 112
PROB_PREFIX = "prob_"


def _probabilities(row: Row) -> dict[str, float]:
    """class -> probability from the ``prob_<class>`` columns of one row."""
    probs = {}
    for key, value in row.items():
        if key and key.startswith(PROB_PREFIX) and (p := to_float(value)) is not None:
            probs[key[len(PROB_PREFIX):]] = p
    return probs


def _prob_bars(row: Row) -> Markup:
    """The top three probabilities as small bars; the true class is always listed."""
    probs = _probabilities(row)
    true = row.get("true", "")
    top = sorted(probs, key=lambda c: -probs[c])[:3]
    if true in probs and true not in top:
        top.append(true)
    items = []
    for cls in top:
        mark = " true" if cls == true else " pred" if cls == row.get("predicted") else ""
        items.append(Markup('<li class="p{}"><span class="bar" style="width:{}%"></span><span class="lbl">{}</span>'
                            '<span class="val">{}</span></li>').format(mark, f"{100.0 * probs[cls]:.1f}", cls,
                                                                       M.fmt_pct(probs[cls])))
    return Markup('<ul class="probs">{}</ul>').format(M.join(items)) if items else M.EMPTY


def _card(data: RunData, row: Row) -> Markup:
    """One gallery card: the copied image, true → predicted, probabilities, loss."""
    path = inside_run(data.run, row.get("copy", ""))
    thumb = M.thumbnail_bytes(path) if path else None
    name = Path(row.get("path") or row.get("copy") or "").name
    picture = (M.img(thumb, f"{row.get('true', '')} predicted as {row.get('predicted', '')}: {name}")
               if thumb else Markup('<div class="noimg">image not available</div>'))
    flag = Markup('<span class="badge">likely label error</span>') if _is_label_issue(row) else M.EMPTY
    loss = to_float(row.get("loss"))
    return Markup('<div class="shot">{}{}<div class="meta">'
                  '<div class="pair"><span class="t">{}</span> → <span class="pr">{}</span></div>{}'
                  '<div class="small">#{} · loss {}{}</div>'
                  '<div class="fname" title="{}">{}</div></div></div>').format(
        picture, heatmap_strip(data, row), row.get("true", ""), row.get("predicted", ""), _prob_bars(row),
        row.get("rank", ""), M.fmt_num(loss), flag, row.get("path", ""), name)


def heatmap_strip(data: RunData, row: Row) -> Markup:
    """The Grad-CAM overlays of a row (``heatmap_predicted``, ``heatmap_true``) side by side, each named by its class."""
    cells = []
    right = row.get("predicted") == row.get("true")
    for key, name, tone in (("heatmap_predicted", row.get("predicted", ""), "t" if right else "pr"),
                            ("heatmap_true", row.get("true", ""), "t")):
        path = inside_run(data.run, row.get(key) or "")
        thumb = M.thumbnail_bytes(path, HEATMAP_SIDE_PX) if path else None
        if thumb and name:
            cells.append(Markup('<div class="cam">{}<span class="{}">where it sees {}</span></div>').format(
                M.img(thumb, f"Grad-CAM heatmap for class {name}"), tone, name))
    layout = "cams" if len(cells) > 1 else "cams one"
    return Markup('<div class="{}">{}</div>').format(layout, M.join(cells)) if cells else M.EMPTY


def _is_label_issue(row: Row) -> bool:
    return str(row.get("label_issue", "")).strip().lower() in ("1", "true", "yes")


def _by_rank(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (to_float(r.get("rank")) is None, to_float(r.get("rank")) or 0.0))


def _shown_note(shown: int, total: int, what: str, csv_name: str) -> Markup:
    """'Showing 48 of 312 <what>' when capped; ``what`` is plural ('images, ...')."""
    if total == 1:
        return M.note(f"Showing the only one of the {what}.")
    if shown >= total:
        return M.note(f"Showing all {total:,} {what}.")
    return M.note(Markup("Showing {} of {} {}; all are listed in {}.").format(
        f"{shown:,}", f"{total:,}", what, M.code(csv_name)), "cap")


def _pairs_table(rows: list[Row]) -> Markup:
    pairs = Counter((r.get("true", ""), r.get("predicted", "")) for r in rows)
    top = pairs.most_common(MAX_PAIRS_SHOWN)
    body = [[M.td(t), M.td(p), M.num_td(n), M.num_td(n / len(rows), M.fmt_pct(n / len(rows)))] for (t, p), n in top]
    caption = "Most frequent confusions" + (f" (top {len(top)} of {len(pairs)})" if len(pairs) > len(top) else "")
    return M.table(["true class", "predicted as", "mistakes", "share"], body, caption=caption,
                   numeric=[False, False, True, True])


def _gallery(cards: list[Markup]) -> Markup:
    return Markup('<div class="gallery">{}</div>').format(M.join(cards))


def mistakes_section(data: RunData, run_arg: str) -> Markup:
    """The worst misclassified images (highest loss first) with probabilities."""
    problems = M.join(M.problem(v) for k, v in data.problems.items() if k == data.run.mistakes_csv.name)
    if data.mistakes is None:
        return section("mistakes", "Mistakes", problems + M.hint("mistakes have not been collected", "mistakes", run_arg))
    if not data.mistakes:
        return section("mistakes", "Mistakes", M.note("No mistakes: the model classified every image of the "
                                                      "split correctly, so there is nothing to show.", "good"))
    rows = _by_rank(data.mistakes)
    shown = rows[:MAX_MISTAKES_SHOWN]
    csv_name = str(data.run.mistakes_csv.relative_to(data.run.root))
    body = _shown_note(len(shown), len(rows), "misclassified images, highest loss first", csv_name)
    body += _pairs_table(rows)
    if not any(r.get("heatmap_predicted") for r in shown):
        body += M.note(Markup("No Grad-CAM heatmaps yet: {} draws where the model looks for the predicted and for "
                              "the true class.").format(M.code(M.command_for("mistakes", run_arg, " --heatmaps 48"))),
                       "hint")
    body += _gallery([_card(data, r) for r in shown])
    return section("mistakes", "Mistakes", body,
                   f"{len(rows):,} misclassified images. Each card: the image, the Grad-CAM heatmaps of the "
                   "predicted and of the true class (red = the regions that raise that class's score), true → "
                   "predicted class, the top class probabilities (true class outlined) and the loss.")


def label_errors_section(data: RunData, run_arg: str) -> Markup:
    """Mistakes flagged as likely label errors (confidently wrong), least self-confident first."""
    if data.mistakes is None:
        return section("label-errors", "Likely label errors",
                       M.hint("mistakes have not been collected", "mistakes", run_arg))
    flagged = [r for r in data.mistakes if _is_label_issue(r)]
    if not flagged:
        text = (f"None of the {len(data.mistakes):,} mistakes looks like a label error." if data.mistakes
                else "No mistakes, so no label errors to check.")
        return section("label-errors", "Likely label errors", M.note(text, "good"))
    flagged.sort(key=lambda r: to_float(r.get("self_confidence")) if to_float(r.get("self_confidence")) is not None
                 else 1.0)
    shown = flagged[:MAX_LABEL_ERRORS_SHOWN]
    csv_name = str(data.run.mistakes_csv.relative_to(data.run.root))
    body = _shown_note(len(shown), len(flagged), "flagged images, least confident in their label first",
                       f"{csv_name} (label_issue = 1)")
    body += _gallery([_card(data, r) for r in shown])
    return section("label-errors", "Likely label errors", body,
                   "The model is confident in another class and gives the given label a low probability. "
                   "Look at these by eye: if the label is wrong, fix it in the data and train again.")


def _enhance_table(rows: list[Row]) -> Markup:
    cols = ("num_images", "accuracy", "rescued", "broken", "net_gain", "mean_delta_true_prob")
    ordered = sorted(rows, key=lambda r: -(to_float(r.get("net_gain")) or 0.0))
    body = []
    for r in ordered:
        gain = to_float(r.get("net_gain")) or 0.0
        tone = "gain" if gain > 0 else "loss" if gain < 0 else ""
        acc = to_float(r.get("accuracy"))
        cells = [M.td(r.get("transform", ""), "name"), M.td(r.get("params", ""), "params")]
        cells += [M.num_td(acc, M.fmt_pct(acc)) if c == "accuracy" else
                  M.num_td(to_float(r.get(c)), cls=tone if c == "net_gain" else "") for c in cols]
        body.append(cells)
    headers = ["transform", "parameters", "images", "accuracy", "rescued", "broken", "net gain", "mean Δ p(true)"]
    return M.table(headers, body, numeric=[False, False] + [True] * 6)


def enhance_section(data: RunData, run_arg: str) -> Markup:
    """Which intensity enhancements rescue mistakes and which break correct images."""
    problems = M.join(M.problem(v) for k, v in data.problems.items() if k == data.run.enhance_summary_csv.name)
    if data.enhance_summary is None:
        return section("enhance", "Enhancement", problems + M.hint("enhancements have not been tested", "enhance",
                                                                   run_arg))
    body = _enhance_table(data.enhance_summary) if data.enhance_summary else M.note("enhance/summary.csv is empty.")
    chart = data.run.enhance_summary_csv.with_suffix(".png")
    if chart.is_file():
        body += M.figure(M.image_bytes(chart), "enhancement summary chart", "Rescued and broken images per transform.")
    figures = data.enhance_figures
    if figures:
        shown = figures[:MAX_ENHANCE_FIGURES_SHOWN]
        folder = str(data.run.enhance_figures_dir.relative_to(data.run.root))
        body += Markup("<h3>Per-image figures</h3>") + _shown_note(len(shown), len(figures), "per-image figures",
                                                                   f"{folder}/")
        body += Markup('<div class="figs">{}</div>').format(
            M.join(M.figure(M.image_bytes(p), p.name, p.name) for p in shown))
    intro = Markup("Each transform is applied to the images and the model predicts again. <em>Rescued</em>: was "
                   "wrong, now right. <em>Broken</em>: was right, now wrong. Net gain = rescued − broken.")
    return section("enhance", "Enhancement", problems + body, intro)
