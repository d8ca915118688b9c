"""Assemble the one-file HTML report of a run: styles, the table-sorting script, the sections.

The page has no external resources (a Content-Security-Policy forbids them), so it opens
from disk in any browser with no server and no network.
"""

from __future__ import annotations

from collections.abc import Callable

from imgclf.reporting import evaluations, galleries, sections
from imgclf.reporting import markup as M
from imgclf.reporting.rundata import RunData

SectionFn = Callable[[RunData, str], str]

# (id, navigation label, builder) in page order; the ids are stable (tests and links use them)
SECTIONS: tuple[tuple[str, str, SectionFn], ...] = (
    ("summary", "Summary", sections.summary_section),
    ("curves", "Training curves", sections.curves_section),
    ("counts", "Class counts", sections.counts_section),
    ("evaluations", "Evaluations", evaluations.evaluations_section),
    ("confusion", "Confusion matrix", sections.confusion_section),
    ("per-class", "Per-class metrics", sections.per_class_section),
    ("mistakes", "Mistakes", galleries.mistakes_section),
    ("label-errors", "Label errors", galleries.label_errors_section),
    ("enhance", "Enhancement", galleries.enhance_section),
    ("reproduce", "Reproduce", sections.reproduce_section),
)

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")

STYLE = """
:root{--ink:#1d2330;--muted:#5b6472;--line:#e3e6eb;--soft:#f5f7fa;--accent:#2458a6;--good:#1e7b45;--bad:#b3261e}
*{box-sizing:border-box}
body{margin:0;font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 color:var(--ink);background:#fff}
header.top{background:var(--soft);border-bottom:1px solid var(--line);padding:22px 0 14px}
.wrap{max-width:1240px;margin:0 auto;padding:0 24px}
h1{font-size:26px;margin:0 0 4px;font-weight:650;overflow-wrap:anywhere}
.sub{color:var(--muted);margin:0 0 12px;overflow-wrap:anywhere}
nav a{display:inline-block;margin:0 14px 4px 0;color:var(--accent);text-decoration:none;font-size:14px}
nav a:hover{text-decoration:underline}
section{padding:26px 0 8px;border-bottom:1px solid var(--line)}
h2{font-size:20px;margin:0 0 10px;font-weight:650}
h3{font-size:15px;margin:18px 0 8px;color:var(--muted);font-weight:600}
p.lead{color:var(--muted);margin:-4px 0 12px;max-width:900px}
code,pre{font:13px/1.45 ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace}
code{background:var(--soft);padding:1px 5px;border-radius:4px;overflow-wrap:anywhere}
pre{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:12px;overflow:auto;max-height:520px}
pre.command{white-space:pre-wrap;overflow-wrap:anywhere;font-size:14px}
.hint,.problem{max-width:900px}
.hint{background:#fff8e6;border-left:4px solid #e2a400;padding:10px 14px;border-radius:4px}
.problem{background:#fdecea;border-left:4px solid var(--bad);padding:10px 14px;border-radius:4px}
.warn{color:#8a5a00}
.good{color:var(--good)}
.cap{font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 10px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:170px;background:#fff}
.card span{display:block;color:var(--muted);font-size:13px}
.card strong{display:block;font-size:24px;font-weight:650}
.card small{color:var(--muted);font-size:12px}
.two-col{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:0 32px}
.table-wrap{overflow-x:auto;margin:6px 0 12px}
table{border-collapse:collapse;font-size:14px;min-width:320px}
caption{text-align:left;color:var(--muted);font-size:13px;padding:0 0 6px}
th,td{padding:5px 12px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums}
thead th{background:var(--soft);font-weight:600;white-space:nowrap}
table.sortable thead th{cursor:pointer;user-select:none}
table.sortable thead th:hover{color:var(--accent)}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:10px}
th[aria-sort=descending]::after{content:" \\25BC";font-size:10px}
tfoot td{font-weight:600;border-top:2px solid var(--line)}
table.kv th{font-weight:500;color:var(--muted);width:40%;white-space:nowrap}
table.kv td{overflow-wrap:anywhere}
td.barcell{position:relative;min-width:150px}
td.barcell .track{position:absolute;left:12px;right:4.6em;top:30%;height:40%}
td.barcell .bar{position:absolute;left:0;top:0;bottom:0;background:#c9dbf2;border-radius:2px}
td.gain{color:var(--good);font-weight:600} td.loss{color:var(--bad);font-weight:600}
td.params{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;overflow-wrap:anywhere}
figure{margin:8px 0 18px}
figure img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:4px}
figure.matrix img{max-width:min(100%,860px)}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:0 20px}
figcaption{color:var(--muted);font-size:13px;margin-top:4px;max-width:900px;overflow-wrap:anywhere}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(196px,1fr));gap:14px}
.shot{border:1px solid var(--line);border-radius:8px;overflow:hidden;background:#fff}
.shot img,.noimg{display:block;width:100%;aspect-ratio:1/1;object-fit:contain;background:#eef0f3;
 image-rendering:auto}
.noimg{display:flex;align-items:center;justify-content:center;color:var(--muted);font-size:13px}
.meta{padding:8px 10px;font-size:13px}
.pair{font-weight:600;overflow-wrap:anywhere}
.pair .t{color:var(--good)} .pair .pr{color:var(--bad)}
.small{color:var(--muted);font-size:12px}
.fname{color:var(--muted);font-size:11px;overflow-wrap:anywhere;margin-top:2px}
.badge{display:inline-block;margin-left:6px;padding:0 6px;border-radius:9px;background:#fdecea;color:var(--bad);
 font-size:11px;font-weight:600}
ul.probs{list-style:none;margin:6px 0;padding:0}
ul.probs li{position:relative;display:flex;justify-content:space-between;gap:6px;padding:1px 4px;margin:2px 0;
 font-size:12px;border-radius:3px;overflow:hidden}
ul.probs li .bar{position:absolute;left:0;top:0;bottom:0;background:#e7ecf3}
ul.probs li.pred .bar{background:#f6d9d6} ul.probs li.true{outline:1.5px solid var(--good)}
ul.probs li .lbl,ul.probs li .val{position:relative;overflow-wrap:anywhere}
ul.probs li .val{font-variant-numeric:tabular-nums}
footer{color:var(--muted);font-size:13px;padding:18px 0 40px}
"""

SCRIPT = """
(function () {
  "use strict";
  function key(row, index) {
    var cell = row.cells[index];
    if (!cell) { return ""; }
    var raw = cell.getAttribute("data-sort");
    if (raw === null) { raw = cell.textContent.trim(); }
    var num = Number(raw);
    return (raw !== "" && isFinite(num)) ? num : raw.toLowerCase();
  }
  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") { return a - b; }
    if (typeof a === "number") { return -1; }
    if (typeof b === "number") { return 1; }
    return a.localeCompare(b);
  }
  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0];
    var headers = Array.prototype.slice.call(th.parentNode.children);
    var index = headers.indexOf(th);
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) { var r = compare(key(a, index), key(b, index)); return ascending ? r : -r; });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll("table.sortable thead th").forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(th); } });
  });
})();
"""


def _header(data: RunData) -> str:
    summary, config = data.summary or {}, data.config or {}
    model = summary.get("model") or config.get("model") or "unknown model"
    dataset = summary.get("data") or config.get("data") or "unknown data"
    nav = "".join(f'<a href="#{sid}">{M.esc(label)}</a>' for sid, label, _ in SECTIONS)
    return (f'<header class="top"><div class="wrap"><h1>Run {M.esc(data.name)}</h1>'
            f'<p class="sub">{M.esc(model)} trained on {M.code(str(dataset))} · '
            f"{len(data.class_names)} classes</p><nav>{nav}</nav></div></header>")


def render_report(data: RunData, run_arg: str) -> str:
    """The complete HTML page for ``data``; ``run_arg`` is the run path quoted in hints."""
    body = "".join(build(data, run_arg) for _, _, build in SECTIONS)
    footer = (f"<footer>Every number on this page comes from a file in {M.code(str(data.run.root))}; "
              f"rebuild the page with {M.code(M.command_for('report', run_arg))}.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>imgclf report · {M.esc(data.name)}</title><style>{STYLE}</style></head>"
            f'<body>{_header(data)}<main class="wrap">{body}{footer}</main>'
            f"<script>{SCRIPT}</script></body></html>\n")
