"""The report's calibration section: ECE, NLL, Brier, the reliability diagram and the fitted temperature.

Drawn from the ``calibration`` entry of every evaluation.json (written by ``imgclf evaluate``) and
from ``calibration.json`` (written by ``imgclf calibrate``, one record per checkpoint); the diagram
is redrawn from the stored bins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from markupsafe import Markup

from imgclf.reporting import markup as M
from imgclf.reporting import plots
from imgclf.reporting.evaluations import data_cell
from imgclf.reporting.rundata import Evaluation, RunData, to_float
from imgclf.reporting.sections import section

SCORES = (("ece", "ECE"), ("nll", "NLL"), ("brier", "Brier score"))
INTRO = ("Are the probabilities honest? In a well-calibrated model, of the images predicted with 80% "
         "confidence, 80% are right. ECE: the gap between confidence and accuracy, averaged over 15 "
         "confidence bins (0 is perfect). NLL: the mean −log p(true class). Brier: the squared error of "
         "the probability vector. Lower is better for all three. Temperature scaling divides the logits by one "
         "number T fitted on held-out images: it changes the probabilities, never the predicted class.")


def _calibration(ev: Evaluation) -> Mapping[str, Any] | None:
    value = (ev.summary or {}).get("calibration")
    return value if isinstance(value, Mapping) else None


def _record(data: RunData, checkpoint: Any) -> Mapping[str, Any] | None:
    record = (data.calibration or {}).get(str(checkpoint))
    return record if isinstance(record, Mapping) else None


def _fitted_here(record: Mapping[str, Any] | None, summary: Mapping[str, Any]) -> bool:
    return record is not None and all(record.get(k) == summary.get(k) for k in ("data", "split", "checkpoint"))


def _stale(record: Mapping[str, Any] | None, calibration: Mapping[str, Any]) -> bool:
    """Evaluated with another temperature than the one the checkpoint now carries."""
    used = to_float(calibration.get("temperature"))
    now = to_float(record.get("temperature")) if record is not None else 1.0
    return used is not None and now is not None and abs(used - now) > 1e-9 * max(1.0, now)


def _note(data: RunData, ev: Evaluation, calibration: Mapping[str, Any]) -> str:
    summary, record = ev.summary or {}, _record(data, (ev.summary or {}).get("checkpoint"))
    if _stale(record, calibration):
        return "older temperature: evaluate again"
    if _fitted_here(record, summary):
        return "T fitted on these images: optimistic"
    return "held out" if record is not None else ""


def _row(data: RunData, ev: Evaluation, calibration: Mapping[str, Any]) -> list[Markup]:
    s = ev.summary or {}
    return [data_cell(s), M.td(s.get("split", "–")), M.td(s.get("checkpoint", "–")),
            M.num_td(to_float(calibration.get("temperature")))] + \
        [M.num_td(to_float(calibration.get(key))) for key, _ in SCORES] + [M.td(_note(data, ev, calibration))]


def _diagram_source(data: RunData, rated: list[tuple[Evaluation, Mapping[str, Any]]]
                    ) -> tuple[Evaluation, Mapping[str, Any]]:
    """The evaluation to draw: the first whose numbers are current and not on the fit split, else the first."""
    for ev, calibration in rated:
        record = _record(data, (ev.summary or {}).get("checkpoint"))
        if not _stale(record, calibration) and not _fitted_here(record, ev.summary or {}) \
                and not (ev.summary or {}).get("optimistic"):
            return ev, calibration
    return rated[0]


def _diagram(data: RunData, ev: Evaluation, calibration: Mapping[str, Any]) -> Markup:
    bins = calibration.get("bins")
    if isinstance(bins, list) and bins and all(isinstance(b, Mapping) for b in bins):
        png: bytes | None = plots.render_reliability_diagram(bins, to_float(calibration.get("ece")))
    else:
        png = M.image_bytes(ev.folder.reliability_png) if ev.folder.reliability_png.is_file() else None
    if png is None:
        return M.problem("evaluation.json has no usable reliability bins")
    s = ev.summary or {}
    caption = (f"{s.get('split', '?')} split, {s.get('checkpoint', '')} weights, temperature "
               f"{M.fmt_num(to_float(calibration.get('temperature')), 4)}. Bars: the accuracy of the images in each "
               "confidence bin; the dashed diagonal is perfect calibration, red hatching the gap. Below: how many "
               "images fall in each bin. Bars under the diagonal mean over-confidence.")
    return M.figure(png, "reliability diagram", caption, "matrix")


def _evaluated(data: RunData, run_arg: str) -> Markup:
    rated = [(ev, c) for ev in data.evaluations if (c := _calibration(ev)) is not None]
    if not rated:
        what = ("the model has not been evaluated" if not data.evaluations else
                "evaluation.json has no calibration numbers (it predates them)")
        return M.hint(what, "evaluate", run_arg)
    headers = ["data", "split", "checkpoint", "temperature", *(label for _, label in SCORES), "note"]
    body = M.table(headers, [_row(data, ev, c) for ev, c in rated],
                   numeric=[False, False, False, True, True, True, True, False])
    return body + _diagram(data, *_diagram_source(data, rated))


def _fitted(data: RunData, run_arg: str) -> Markup:
    records = [(name, r) for name, r in sorted((data.calibration or {}).items()) if isinstance(r, Mapping)]
    if not records:
        return M.hint("no temperature has been fitted", "calibrate", run_arg)
    body = M.EMPTY
    for name, record in records:
        before, after = record.get("before") or {}, record.get("after") or {}
        rows = [[M.td(label), M.num_td(to_float(before.get(key))), M.num_td(to_float(after.get(key)))]
                for key, label in SCORES if isinstance(before, Mapping) and isinstance(after, Mapping)]
        body += M.note(f"{name} weights: T = {M.fmt_num(to_float(record.get('temperature')), 4)}, fitted on "
                       f"the {record.get('split', '?')} split of {record.get('data', '?')} "
                       f"({M.fmt_num(to_float(record.get('num_images')), 0)} images).")
        body += M.table([f"on the fit split ({name})", "before (T = 1)", "after"], rows, numeric=[False, True, True])
        if record.get("at_bound"):
            body += M.note("The temperature lies at the edge of its search range: the fit split gave little to fit "
                           "on (too few images, or no mistakes).", "warn")
    return body + M.note("T > 1 softens over-confident probabilities, T < 1 sharpens under-confident ones. Judge it on "
                         "images it was not fitted on: the rows marked held out above.")


def calibration_section(data: RunData, run_arg: str) -> Markup:
    """Calibration numbers of every evaluation with a reliability diagram (evaluate), the temperatures (calibrate)."""
    problems = M.problem(data.problems["calibration.json"]) if "calibration.json" in data.problems else M.EMPTY
    body = _evaluated(data, run_arg) + Markup("<h3>Temperature scaling</h3>") + _fitted(data, run_arg)
    return section("calibration", "Calibration", problems + body, INTRO)
