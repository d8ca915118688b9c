"""The report's "Where the model looks" section: Grad-CAM overlays written by ``imgclf explain``.

Drawn from ``explain/explain.csv`` and ``explain/explain.json`` of the most recent explain folder
(beside any evaluation); the mistakes section shows the heatmaps ``imgclf mistakes`` draws beside
each mistake (see :func:`galleries.heatmap_strip`).
"""

from __future__ import annotations

from pathlib import Path

from markupsafe import Markup

from imgclf.reporting import markup as M
from imgclf.reporting.galleries import heatmap_strip
from imgclf.reporting.rundata import Explained, Row, RunData, to_float
from imgclf.reporting.sections import section

MAX_EXPLAINED_SHOWN = 24
NO_IMAGE = Markup('<div class="noimg">heatmap not available</div>')
INTRO = ("Grad-CAM weighs the feature maps of one layer by how much they raise a class's score: red regions "
         "drove the decision. A model that is right for the right reason looks at the object, not at the "
         "background, a watermark or a border.")


def _card(data: RunData, row: Row) -> Markup:
    path = Path(row.get("path") or "")
    true, pred = row.get("true", ""), row.get("predicted", "")
    verdict = M.EMPTY if not true else (Markup(' <span class="good">right</span>') if true == pred else
                                        Markup(' <span class="badge">wrong</span>'))
    label = (Markup('<span class="t">{}</span> → ').format(true) if true else M.EMPTY) + \
        Markup('<span class="pr">{}</span>').format(pred)
    heatmaps = heatmap_strip(data, {**row, "heatmap_true": row.get("heatmap_true") if true != pred else ""})
    return Markup('<div class="shot">{}<div class="meta"><div class="pair">{}{}</div><div class="small">p = {}</div>'
                  '<div class="fname" title="{}">{}</div></div></div>').format(
        heatmaps or NO_IMAGE, label, verdict, M.fmt_pct(to_float(row.get("p_predicted"))), str(path), path.name)


def _where(explained: Explained) -> str:
    """The explain folder inside the run: explain/ (the run's own val evaluation) or evaluations/<key>/explain/."""
    return "explain/" if explained.relative == "." else f"{explained.relative}/explain/"


def explain_section(data: RunData, run_arg: str) -> Markup:
    """Overlays of the predicted class (and of the true class where the model was wrong)."""
    problems = M.join(M.problem(v) for k, v in data.problems.items() if k in ("explain.csv", "explain.json"))
    if not data.explained:
        return section("explain", "Where the model looks", problems + M.hint(
            "no Grad-CAM heatmaps have been drawn", "explain", run_arg), INTRO)
    latest, others = data.explained[0], data.explained[1:]
    info = latest.info or {}
    shown = latest.rows[:MAX_EXPLAINED_SHOWN]
    facts = (f"{len(latest.rows):,} images from {info.get('images', '?')}; layer {info.get('layer', '?')}, "
             f"{info.get('checkpoint', '')} weights, in {_where(latest)}; showing {len(shown)}. Every overlay is in its "
             "heatmaps/ folder, listed with where each map peaks in explain.csv.")
    body = M.note(facts)
    if others:
        body += M.note("Also explained: " + ", ".join(f"{_where(e)} ({len(e.rows)} images)" for e in others) + ".")
    body += Markup('<div class="gallery">{}</div>').format(M.join(_card(data, r) for r in shown))
    return section("explain", "Where the model looks", problems + body, INTRO)
