"""Assemble the one-file HTML report of a run: styles, the table-sorting script, the sections.

The page has no external resources (a Content-Security-Policy forbids them), so it opens
from disk in any browser with no server and no network. The styles and the script are
package data (``reporting/static/report.css``, ``report.js``) inlined into the page.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

from markupsafe import Markup

from imgclf.reporting import calibration, dataquality, evaluations, galleries, saliency, sections
from imgclf.reporting import markup as M
from imgclf.reporting.rundata import RunData

SectionFn = Callable[[RunData, str], Markup]

# (id, navigation label, builder) in page order; the ids are stable (tests and links use them)
SECTIONS: tuple[tuple[str, str, SectionFn], ...] = (
    ("summary", "Summary", sections.summary_section),
    ("curves", "Training curves", sections.curves_section),
    ("counts", "Class counts", sections.counts_section),
    ("evaluations", "Evaluations", evaluations.evaluations_section),
    ("confusion", "Confusion matrix", sections.confusion_section),
    ("per-class", "Per-class metrics", sections.per_class_section),
    ("calibration", "Calibration", calibration.calibration_section),
    ("mistakes", "Mistakes", galleries.mistakes_section),
    ("label-errors", "Label errors", galleries.label_errors_section),
    ("explain", "Where it looks", saliency.explain_section),
    ("enhance", "Enhancement", galleries.enhance_section),
    ("label-issues", "Label issues", dataquality.label_issues_section),
    ("near-duplicates", "Near-duplicates", dataquality.near_duplicates_section),
    ("reproduce", "Reproduce", sections.reproduce_section),
)

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")

STATIC = "static"   # report.css and report.js: package data files, inlined into the page


def static_text(name: str) -> Markup:
    """A file of the page's own CSS or JavaScript, shipped with the package (trusted, inlined as is)."""
    return Markup(resources.files("imgclf.reporting").joinpath(STATIC, name).read_text(encoding="utf-8"))


def _header(data: RunData) -> Markup:
    summary, config = data.summary or {}, data.config or {}
    model = summary.get("model") or config.get("model") or "unknown model"
    dataset = summary.get("data") or config.get("data") or "unknown data"
    nav = M.join(Markup('<a href="#{}">{}</a>').format(sid, label) for sid, label, _ in SECTIONS)
    return Markup('<header class="top"><div class="wrap"><h1>Run {}</h1><p class="sub">{} trained on {} · '
                  '{} classes</p><nav>{}</nav></div></header>').format(
        data.name, model, M.code(str(dataset)), len(data.class_names), nav)


def render_report(data: RunData, run_arg: str) -> str:
    """The complete HTML page for ``data``; ``run_arg`` is the run path quoted in hints."""
    body = M.join(build(data, run_arg) for _, _, build in SECTIONS)
    footer = Markup("<footer>Every number on this page comes from a file in {}; rebuild the page with {}.</footer>"
                    ).format(M.code(str(data.run.root)), M.code(M.command_for("report", run_arg)))
    page = Markup('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                  '<meta http-equiv="Content-Security-Policy" content="{}">'
                  '<meta name="viewport" content="width=device-width, initial-scale=1">'
                  '<link rel="icon" href="data:,">'
                  "<title>imgclf report · {}</title><style>{}</style></head>"
                  '<body>{}<main class="wrap">{}{}</main><script>{}</script></body></html>\n').format(
        CSP, data.name, static_text("report.css"), _header(data), body, footer, static_text("report.js"))
    return str(page)
