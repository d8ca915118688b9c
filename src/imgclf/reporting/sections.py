"""The report sections about training and evaluation: summary, curves, counts, confusion, per class, reproduce.

Each function takes the loaded :class:`RunData` and the run argument to quote in hints,
and returns one ``<section>`` with a stable ``id``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup

from imgclf.data.stats import imbalance_warning
from imgclf.reporting import markup as M
from imgclf.reporting import plots
from imgclf.reporting.rundata import RunData, to_float

KEY_OPTIONS = ("model", "pretrained", "img_size", "channels", "normalize", "preprocess", "epochs", "batch_size",
               "optimizer", "lr", "momentum", "weight_decay", "scheduler", "warmup_steps", "label_smoothing",
               "clip_grad", "best_metric", "seed", "device", "precision")


def section(section_id: str, title: str, body: Markup, intro: Markup | str = "") -> Markup:
    """One page section with a stable id (the browser test and the nav link to it)."""
    lead = Markup('<p class="lead">{}</p>').format(intro) if intro else M.EMPTY
    return Markup('<section id="{}"><h2>{}</h2>{}{}</section>').format(section_id, title, lead, body)


def _problems(data: RunData, *names: str) -> Markup:
    return M.join(M.problem(data.problems[n]) for n in names if n in data.problems)


def metric_card(label: str, value: str, detail: str = "") -> Markup:
    small = Markup("<small>{}</small>").format(detail) if detail else M.EMPTY
    return Markup('<div class="card"><span>{}</span><strong>{}</strong>{}</div>').format(label, value, small)


def _metric_cards(data: RunData) -> list[Markup]:
    summary, ev = data.summary or {}, data.evaluation or {}
    best, final = summary.get("best") or {}, summary.get("final") or {}
    cards = []
    if best:
        cards.append(metric_card("best val accuracy", M.fmt_pct(to_float(best.get("val_acc"))),
                           f"step {M.fmt_num(to_float(best.get('step')))}, epoch {M.fmt_num(to_float(best.get('epoch')), 2)}"))
    if final:
        cards.append(metric_card("final val accuracy", M.fmt_pct(to_float(final.get("val_acc"))),
                           f"val loss {M.fmt_num(to_float(final.get('val_loss')))}"))
    if ev:
        cards.append(metric_card(f"evaluated accuracy ({ev.get('split', 'val')}{_optimistic(ev)})",
                           M.fmt_pct(to_float(ev.get("accuracy"))),
                           f"macro F1 {M.fmt_num(to_float(ev.get('macro_f1')))}, {ev.get('checkpoint', '')} weights"))
        held_out = _held_out(data, ev.get("checkpoint"))
        if held_out:
            cards.append(metric_card("test accuracy (held out)", M.fmt_pct(to_float(held_out.get("accuracy"))),
                               f"{M.fmt_num(to_float(held_out.get('num_images')))} images, "
                               f"{held_out.get('checkpoint', '')} weights"))
        if to_float(ev.get("roc_auc")) is not None:
            cards.append(metric_card("ROC AUC", M.fmt_num(to_float(ev.get("roc_auc"))), "two classes"))
    cards.append(metric_card("classes", str(len(data.class_names) or "–")))
    if summary:
        cards.append(metric_card("training time", M.fmt_seconds(to_float(summary.get("train_time_s"))),
                           f"{summary.get('device', '')} · {summary.get('precision', '')}"))
    return cards


def _optimistic(ev: Mapping[str, Any]) -> str:
    """', selected on val: optimistic' for an evaluation of a checkpoint chosen on the same images."""
    return f", selected on {ev.get('selected_on') or 'val'}: optimistic" if ev.get("optimistic") is True else ""


def _held_out(data: RunData, checkpoint: Any) -> Mapping[str, Any] | None:
    """The evaluation of the same weights on the run's own held-out test split, if there is one."""
    for ev in data.evaluations:
        s = ev.summary or {}
        if s.get("own_data") and s.get("split") == "test" and s.get("checkpoint") == checkpoint:
            return s
    return None


def summary_section(data: RunData, run_arg: str) -> Markup:
    """Data, model, key options, best and final metrics."""
    config, summary = data.config or {}, data.summary or {}
    facts = [("run folder", M.code(str(data.run.root))),
             ("data", M.code(str(summary.get("data") or config.get("data") or "–"))),
             ("model", str(summary.get("model") or config.get("model") or "–"))]
    if summary:
        facts.append(("training", f"{summary.get('epochs', '–')} epochs, {summary.get('steps', '–')} steps"))
    options = [(k, _show(config[k])) for k in KEY_OPTIONS if k in config and k != "model"]
    derived = config.get("derived") if isinstance(config.get("derived"), Mapping) else {}
    options += [(f"{k} (resolved)", _show(v)) for k, v in derived.items() if k in ("device", "precision")]
    recipe = derived.get("recipe") if isinstance(derived.get("recipe"), Mapping) else {}
    options += [(f"{k} (auto)", _show(v)) for k, v in recipe.items()
                if k not in ("notes", "precision") and config.get(k) != v]
    body = Markup('<div class="cards">{}</div>').format(M.join(_metric_cards(data)))
    body += Markup('<div class="two-col"><div><h3>Run</h3>{}</div><div><h3>Key options</h3>{}</div></div>').format(
        M.kv_table(facts), M.kv_table(options) if options else M.note("config.json has no options"))
    if not summary:
        body += M.note(Markup("summary.json is missing: training has not finished (or was stopped). "
                              "Resume it with {}.").format(M.code(M.command_for("train --resume", run_arg))), "hint")
    return section("summary", "Summary", _problems(data, "config.json", "summary.json") + body)


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "–"
    return "–" if value is None else str(value)


def curves_section(data: RunData, run_arg: str) -> Markup:
    """Loss, accuracy and learning rate over steps, drawn from metrics.csv."""
    problems = _problems(data, "metrics.csv")
    if not data.metrics:
        what = "no evaluations recorded in metrics.csv" if data.metrics == [] else "metrics.csv is missing"
        return section("curves", "Training curves", problems + M.hint(what, "train --resume", run_arg))
    best = to_float(((data.summary or {}).get("best") or {}).get("step"))
    png = plots.render_training_curves(data.metrics, best)
    caption = Markup("{} evaluations from {}{}").format(
        len(data.metrics), M.code("metrics.csv"), "; the dotted line marks the best checkpoint." if best is not None else ".")
    return section("curves", "Training curves", problems + M.figure(png, "training curves", caption, "wide"))


def counts_section(data: RunData, run_arg: str) -> Markup:
    """Images per class in each split, with a total row and an imbalance note."""
    counts = (data.summary or {}).get("counts")
    if not isinstance(counts, Mapping) or not counts:
        return section("counts", "Class counts", M.hint("summary.json with class counts is missing", "train --resume",
                                                        run_arg))
    splits = [s for s in counts if isinstance(counts[s], Mapping)]
    classes = data.class_names or sorted({c for s in splits for c in counts[s]})
    totals = {s: sum(int(to_float(v) or 0) for v in counts[s].values()) for s in splits}
    biggest = max((int(to_float(counts[s].get(c)) or 0) for s in splits for c in classes), default=1) or 1
    rows = []
    for cls in classes:
        cells = [M.td(cls)]
        for s in splits:
            n = int(to_float(counts[s].get(cls)) or 0)
            cells.append(M.bar_td(n, n / biggest, f"{n:,}"))
        rows.append(cells)
    foot = [M.td("total")] + [M.num_td(totals[s]) for s in splits]
    body = M.table(["class"] + splits, rows, foot, numeric=[False] + [True] * len(splits))
    train = counts.get("train") if isinstance(counts.get("train"), Mapping) else {}
    warning = imbalance_warning({str(c): int(to_float(n) or 0) for c, n in train.items()})
    if warning:
        body += M.note(f"The train split is imbalanced: {warning.removeprefix('class imbalance: ')}.", "warn")
    return section("counts", "Class counts", body)


def _matrix(ev: Mapping[str, Any], n: int) -> list[list[int]] | None:
    matrix = ev.get("confusion_matrix")
    if not isinstance(matrix, list) or len(matrix) != n or any(not isinstance(r, list) or len(r) != n for r in matrix):
        return None
    return [[int(to_float(v) or 0) for v in row] for row in matrix]


def confusion_section(data: RunData, run_arg: str) -> Markup:
    """The confusion matrix from evaluation.json."""
    ev = data.evaluation
    problems = _problems(data, "evaluation.json")
    if not ev:
        return section("confusion", "Confusion matrix", problems + M.hint("the model has not been evaluated",
                                                                          "evaluate", run_arg))
    classes = [str(c) for c in ev.get("classes") or data.class_names]
    matrix = _matrix(ev, len(classes))
    if matrix is not None:
        png: bytes | None = plots.render_confusion_matrix(matrix, classes, normalize="true")
    else:
        png = M.image_bytes(data.run.confusion_png) if data.run.confusion_png.is_file() else None
    if png is None:
        return section("confusion", "Confusion matrix", problems + M.problem("evaluation.json has no usable matrix"))
    caption = Markup("Rows are the true class, columns the prediction; colour is the fraction of each true class. "
                     "From {} ({} split, {} weights{}); counts also in {}. Other evaluations: see Evaluations.").format(
        M.code("evaluation.json"), ev.get("split", "val"), ev.get("checkpoint", ""), _optimistic(ev),
        M.code("confusion_matrix.csv"))
    body = M.figure(png, "confusion matrix", caption, "matrix" if len(classes) <= 12 else "")
    if data.run.roc_png.is_file():
        body += M.figure(M.image_bytes(data.run.roc_png), "ROC curve", Markup("ROC curve ({}).").format(
            M.code("roc.png")))
    return section("confusion", "Confusion matrix", problems + body)


def per_class_section(data: RunData, run_arg: str) -> Markup:
    """Precision, recall, F1 and support per class; click a header to sort."""
    ev = data.evaluation
    if not ev:
        return section("per-class", "Per-class metrics", M.hint("the model has not been evaluated", "evaluate", run_arg))
    rows = []
    for item in ev.get("per_class") or []:
        if not isinstance(item, Mapping):
            continue
        f1 = to_float(item.get("f1"))
        rows.append([M.td(item.get("class", "")), M.num_td(to_float(item.get("precision"))),
                     M.num_td(to_float(item.get("recall"))), M.bar_td(f1, f1 or 0.0, M.fmt_num(f1)),
                     M.num_td(to_float(item.get("support")))])
    facts = (f"{M.fmt_num(to_float(ev.get('num_images')))} images · accuracy {M.fmt_pct(to_float(ev.get('accuracy')))}"
             f" · loss {M.fmt_num(to_float(ev.get('loss')))} · macro F1 {M.fmt_num(to_float(ev.get('macro_f1')))}")
    if to_float(ev.get("roc_auc")) is not None:
        facts += f" · ROC AUC {M.fmt_num(to_float(ev.get('roc_auc')))}"
    body = M.note(facts) + M.table(["class", "precision", "recall", "F1", "support"], rows,
                                          numeric=[False, True, True, True, True])
    return section("per-class", "Per-class metrics", body, "Click a column header to sort.")


def compact_json(value: Any, indent: int = 0) -> str:
    """Indented JSON in which lists of plain values stay on one line (mean/std, milestones)."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, Mapping) and value:
        items = [f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {compact_json(v, indent + 2)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in value):
        return "[\n" + ",\n".join(inner + compact_json(v, indent + 2) for v in value) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=False, default=str)


def reproduce_section(data: RunData, run_arg: str) -> Markup:
    """The exact training command and the resolved config."""
    config = data.config or {}
    command = config.get("command")
    body = (Markup('<pre class="command">{}</pre>').format(command) if command
            else M.note("config.json does not record the command line.", "hint"))
    shown = {k: v for k, v in config.items() if k != "command"}
    if shown:
        body += Markup('<h3>Resolved configuration ({})</h3><pre class="config">{}</pre>').format(
            M.code("config.json"), compact_json(shown))
    return section("reproduce", "Reproduce this run", body)
