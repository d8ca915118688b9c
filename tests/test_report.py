"""imgclf report: one self-contained HTML page from whatever a run folder holds.

The run folders here are written in the producers' formats (train, evaluate, mistakes,
enhance) with real PNG images and real matplotlib figures; the report is what is tested.
"""

from __future__ import annotations

import csv
import json
import re
import zlib
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.artifacts import METRICS_COLUMNS, EvaluationDir, RunDir
from imgclf.cli import main
from imgclf.io import TMP_PREFIX
from imgclf.reporting import plots
from imgclf.reporting.galleries import MAX_MISTAKES_SHOWN
from imgclf.reporting.html import SECTIONS

SECTION_IDS = tuple(s[0] for s in SECTIONS)

# ------------------------------------------------------------------ run-folder builders (inputs)


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False), encoding="utf-8")


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _sample_image(label: str, index: int, size: int = 28) -> Image.Image:
    """A small noisy image whose colour depends on the class."""
    rng = np.random.default_rng(zlib.crc32(f"{label}|{index}".encode()))
    colour = np.array([zlib.crc32(label.encode()) >> s & 0xFF for s in (0, 8, 16)], dtype=np.int16)
    pixels = rng.integers(-40, 40, size=(size, size, 3)) + colour
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _save_figure(path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.bar(["a", "b", "c"], [3, 1, 2])
    ax.set_title(title)
    fig.savefig(path, dpi=60)
    plt.close(fig)


def make_train_run(root: Path, classes: Sequence[str], num_evals: int = 6, steps_per_epoch: int = 10) -> RunDir:
    """What ``imgclf train`` writes: config.json, classes.json, metrics.csv, summary.json."""
    run = RunDir(root)
    root.mkdir(parents=True, exist_ok=True)
    config = {"model": "resnet18", "img_size": 32, "epochs": num_evals, "batch_size": 64, "optimizer": "sgd",
              "lr": 0.05, "scheduler": "cosine", "label_smoothing": 0.1, "seed": 0, "precision": "auto",
              "device": "auto", "data": "data/digits",
              "derived": {"num_classes": len(classes), "img_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3,
                          "steps_per_epoch": steps_per_epoch, "device": "cpu", "precision": "fp32"},
              "command": f"imgclf train data/digits --epochs {num_evals} --out {root}"}
    _write_json(run.config_json, config)
    _write_json(run.classes_json, list(classes))
    rows = []
    for i in range(num_evals):
        step = (i + 1) * steps_per_epoch
        rows.append([step, float(i + 1), 1.5 / (i + 1), 1.7 / (i + 1) + 0.1, min(0.99, 0.4 + 0.1 * i),
                     0.05 * (1 - i / num_evals), 900.0, 3.0 * (i + 1), 100])
    rows[0][2] = ""   # a blank cell must not break the curves
    _write_csv(run.metrics_csv, METRICS_COLUMNS, rows)
    best = {"step": rows[-1][0], "epoch": rows[-1][1], "val_acc": rows[-1][4], "val_loss": rows[-1][3]}
    counts = {"train": {c: 40 + 5 * k for k, c in enumerate(classes)}, "val": {c: 10 for c in classes}}
    _write_json(run.summary_json, {
        "run": root.name, "model": "resnet18", "data": "data/digits", "num_classes": len(classes),
        "classes": list(classes), "counts": counts, "img_size": 32, "epochs": num_evals,
        "steps": rows[-1][0], "best": best, "final": {"step": rows[-1][0], "val_acc": rows[-1][4],
                                                      "val_loss": rows[-1][3]},
        "train_time_s": 93.5, "device": "cpu", "precision": "fp32"})
    return run


OWN_VAL = {"data": "/data/digits", "data_name": "digits-0a1b2c3d", "own_data": True, "split": "val",
           "checkpoint": "best", "selected_on": "val", "optimistic": True,
           "selection": "selected on val (optimistic: the best checkpoint was chosen on these images)"}


def add_evaluation(run: RunDir, classes: Sequence[str], seed: int = 0, folder: EvaluationDir | None = None,
                   **fields: object) -> np.ndarray:
    """What ``imgclf evaluate`` writes (the run's own val/best unless ``folder``); returns the confusion matrix."""
    folder = folder or run
    rng = np.random.default_rng(seed)
    n = len(classes)
    matrix = rng.integers(0, 3, size=(n, n)) + np.diag(rng.integers(8, 15, size=n))
    per_class = []
    for k, c in enumerate(classes):
        tp, support, predicted = matrix[k, k], matrix[k].sum(), matrix[:, k].sum()
        p, r = tp / predicted, tp / support
        per_class.append({"class": c, "precision": float(p), "recall": float(r), "f1": float(2 * p * r / (p + r)),
                          "support": int(support)})
    _write_json(folder.evaluation_json, {
        **OWN_VAL, "num_images": int(matrix.sum()),
        "accuracy": float(np.trace(matrix) / matrix.sum()), "loss": 0.41,
        "macro_f1": float(np.mean([x["f1"] for x in per_class])), "roc_auc": 0.93 if n == 2 else None,
        "classes": list(classes), "per_class": per_class, "confusion_matrix": matrix.tolist(),
        "calibration": _calibration(rng, n, int(matrix.sum())), **fields})
    plots.plot_confusion_matrix(matrix, classes, folder.confusion_png)
    if n == 2:
        plots.plot_roc_curve(np.array([0.0, 0.2, 1.0]), np.array([0.0, 0.8, 1.0]), 0.8, classes[1], folder.roc_png)
    _write_csv(folder.confusion_csv, ["true"] + list(classes), [[c] + list(row) for c, row in zip(classes, matrix)])
    return matrix


def _calibration(rng: np.random.Generator, num_classes: int, num_images: int, temperature: float = 1.0) -> dict:
    """The ``calibration`` entry of evaluation.json, computed by evaluate's own function."""
    from imgclf.analysis.calibration import calibration_summary

    probs = rng.dirichlet(np.ones(num_classes) * 0.3, size=num_images)
    return calibration_summary(rng.integers(0, num_classes, num_images), probs, temperature)


def add_calibration(run: RunDir, classes: Sequence[str], temperature: float = 1.8,
                    held_out: bool = False) -> EvaluationDir | None:
    """What ``imgclf calibrate`` writes (calibration.json) and the evaluations run after it: the own val/best
    (the fit split) and, with ``held_out``, a test split, both with the temperature; returns the test folder."""
    _write_json(run.calibration_json, {"best": {
        "temperature": temperature, "checkpoint": "best", "step": 60, "split": "val", "data": OWN_VAL["data"],
        "num_images": 40, "output": "softmax", "at_bound": False,
        "before": {"ece": 0.12, "nll": 0.61, "brier": 0.3}, "after": {"ece": 0.04, "nll": 0.45, "brier": 0.27}}})
    evaluation = json.loads(run.evaluation_json.read_text())
    evaluation["calibration"]["temperature"] = temperature
    _write_json(run.evaluation_json, evaluation)
    if not held_out:
        return None
    test = EvaluationDir(run.evaluations_dir / f"{OWN_VAL['data_name']}-test-best")
    add_evaluation(run, classes, seed=5, folder=test, split="test", optimistic=False, selection="held out")
    evaluation = json.loads(test.evaluation_json.read_text())
    evaluation["calibration"]["temperature"] = temperature
    _write_json(test.evaluation_json, evaluation)
    return test


def _heatmap(path: Path, seed: int) -> str:
    """A Grad-CAM-like overlay PNG (what imgclf explain/mistakes write); returns its name for a CSV cell."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _sample_image(f"heat{seed}", seed, size=64).save(path)
    return path.as_posix()


def add_mistakes(run: RunDir, classes: Sequence[str], count: int, names: Sequence[str] = (),
                 heatmaps: int = 0) -> list[str]:
    """What ``imgclf mistakes`` writes (images copied under mistakes/, overlays for the first ``heatmaps``)."""
    rng = np.random.default_rng(1)
    rows, file_names = [], []
    for rank in range(1, count + 1):
        true, pred = rng.choice(len(classes), size=2, replace=False)
        probs = rng.dirichlet(np.ones(len(classes)))
        probs[pred] += 1.0
        probs /= probs.sum()
        name = names[rank - 1] if rank <= len(names) else f"img_{rank:04d}.png"
        copy = Path("mistakes") / classes[true] / classes[pred] / name
        (run.root / copy).parent.mkdir(parents=True, exist_ok=True)
        _sample_image(classes[true], rank).save(run.root / copy)
        loss = float(-np.log(probs[true]))
        label_issue = int(probs[pred] > 0.5 and rank % 3 == 0)
        cams = ["", ""]
        if rank <= heatmaps:
            cams = [_heatmap(run.root / f"mistakes/_gradcam/{rank:04d}__{kind}.png", 2 * rank + k).replace(
                run.root.as_posix() + "/", "") for k, kind in enumerate(("pred", "true"))]
        rows.append([rank, f"data/val/{classes[true]}/{name}", str(copy), classes[true], classes[pred],
                     *map(float, probs), loss, float(probs[pred] - probs[true]), label_issue, float(probs[true]),
                     *cams])
        file_names.append(name)
    header = ["rank", "path", "copy", "true", "predicted", *(f"prob_{c}" for c in classes), "loss", "margin",
              "label_issue", "self_confidence", "heatmap_predicted", "heatmap_true"]
    _write_csv(run.mistakes_csv, header, rows)
    _save_figure(run.mistakes_gallery_png, "gallery")
    _save_figure(run.label_errors_png, "label errors")
    return file_names


def add_enhance(run: RunDir, num_figures: int = 3) -> None:
    """What ``imgclf enhance`` writes."""
    header = ["transform", "params", "num_images", "accuracy", "rescued", "broken", "net_gain", "mean_delta_true_prob"]
    rows = [["none", "", 20, 0.5, 0, 0, 0, 0.0], ["gamma", "g=0.5", 20, 0.6, 4, 2, 2, 0.031],
            ["hist_eq", "", 20, 0.35, 1, 4, -3, -0.08], ["clahe", "clip=2.0,tiles=8", 20, 0.55, 2, 1, 1, 0.01]]
    _write_csv(run.enhance_summary_csv, header, rows)
    _write_csv(run.enhance_per_image_csv, ["path", "transform", "true", "predicted", "prob_true"],
               [["mistakes/a/b/img_0001.png", "gamma", "a", "a", 0.7]])
    _save_figure(run.enhance_summary_csv.with_suffix(".png"), "rescued vs broken")
    for i in range(num_figures):
        _save_figure(run.enhance_figures_dir / f"img_{i:04d}_gamma.png", f"figure {i}")


def add_label_issues(run: RunDir, classes: Sequence[str], count: int = 4) -> None:
    """What ``imgclf label-issues --run RUN`` writes into RUN/label-issues/train/."""
    files = run.label_issues("train")
    _write_json(files.summary_json, {"split": "train", "num_images": 120, "folds": 5, "model": "resnet18",
                                     "num_flagged": count, "out_of_fold_accuracy": 0.9125})
    _write_csv(files.issues_csv, ["rank", "path", "given", "suggested", "self_confidence", "suggested_prob",
                                  "margin", "fold"],
               [[k + 1, f"data/train/{classes[0]}/odd_{k}.png", classes[0], classes[1], 0.05 * (k + 1), 0.9, -0.8, k]
                for k in range(count)])
    _save_figure(files.gallery_png, "label issues")


def add_explain(run: RunDir, classes: Sequence[str], count: int) -> None:
    """What ``imgclf explain`` writes: overlays, explain.csv and explain.json."""
    rows = []
    for n in range(count):
        true, pred = classes[n % len(classes)], classes[(n // 2) % len(classes)]
        stem = f"{n + 1:04d}_img_{n}"
        pred_png = _heatmap(run.explain_dir / "heatmaps" / f"{stem}__pred.png", 100 + n)
        true_png = pred_png if true == pred else _heatmap(run.explain_dir / "heatmaps" / f"{stem}__true.png", 200 + n)
        rel = [p.replace(run.root.as_posix() + "/", "") for p in (pred_png, true_png)]
        rows.append([f"data/val/{true}/img_{n}.png", true, pred, 0.8, 0.8 if true == pred else 0.1, *rel,
                     3, 4, 3, 4])
    _write_csv(run.explain_csv, ["path", "true", "predicted", "p_predicted", "p_true", "heatmap_predicted",
                                 "heatmap_true", "peak_predicted_row", "peak_predicted_col", "peak_true_row",
                                 "peak_true_col"], rows)
    _write_json(run.explain_json, {"layer": "layer4", "checkpoint": "best", "images": "the val split",
                                   "num_images": count, "method": "Grad-CAM"})


def make_full_run(root: Path, classes: Sequence[str] = ("allReal", "allFake"), num_mistakes: int = 8,
                  names: Sequence[str] = (), num_figures: int = 3) -> RunDir:
    """A run on which train, evaluate, mistakes, enhance and label-issues have all been run."""
    run = make_train_run(root, classes)
    add_evaluation(run, classes)
    add_calibration(run, classes)
    add_mistakes(run, classes, num_mistakes, names, heatmaps=min(num_mistakes, 4))
    add_explain(run, classes, 6)
    add_enhance(run, num_figures)
    add_label_issues(run, classes)
    return run


def build_report(run: RunDir, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``imgclf report RUN`` through the CLI; return the page."""
    assert main(["report", str(run.root)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == str(run.report_html)
    return run.report_html.read_text(encoding="utf-8")


def section_html(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', page, re.S)
    assert match, f"section {section_id} missing"
    return match.group(1)


class _LinkCollector(HTMLParser):
    """Every src/href attribute value and every tag name of a page, as a browser parses it."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [value or "" for name, value in attrs if name in ("src", "href")]


def assert_self_contained(page: str) -> None:
    parser = _LinkCollector()
    parser.feed(page)
    assert parser.urls, "expected some src/href attributes"
    external = [u for u in parser.urls if not (u.startswith("data:") or u.startswith("#"))]
    assert not external, external[:5]
    assert not any(u.lower().startswith(("http:", "https:", "//")) for u in parser.urls)
    assert "@import" not in page and "url(" not in page
    assert parser.tags.count("script") == 1


# ------------------------------------------------------------------ tests


def test_train_only_run_says_what_has_not_run_yet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_train_run(tmp_path / "resnet18-1", ("cat", "dog", "bird"))
    page = build_report(run, capsys)
    for sid in SECTION_IDS:
        section_html(page, sid)
    for sid, verb in (("evaluations", "evaluate"), ("confusion", "evaluate"), ("per-class", "evaluate"),
                      ("mistakes", "mistakes"), ("label-errors", "mistakes"), ("enhance", "enhance"),
                      ("calibration", "evaluate"), ("calibration", "calibrate"), ("explain", "explain")):
        body = section_html(page, sid)
        assert "Not run yet" in body and f"<code>imgclf {verb} {run.root}</code>" in body, sid
    assert f"<code>imgclf label-issues --run {run.root}</code>" in section_html(page, "label-issues")
    assert "imgclf prepare SRC DST" in section_html(page, "near-duplicates")
    assert "Not run yet" not in section_html(page, "curves")
    assert section_html(page, "curves").count("<img ") == 1
    assert "imgclf train data/digits --epochs 6" in section_html(page, "reproduce")
    assert "93.5" not in page and "1 min 34 s" in page     # training time shown readably
    assert_self_contained(page)
    assert not list(run.root.glob(TMP_PREFIX + "*"))


def test_two_class_run_with_everything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    classes = ("allReal", "allFake")
    run = make_full_run(tmp_path / "run", classes, num_mistakes=8)
    page = build_report(run, capsys)
    assert "Not run yet" not in page
    assert "ROC AUC" in section_html(page, "per-class")
    assert section_html(page, "confusion").count("<img ") == 2         # the matrix and the ROC curve
    mistakes = section_html(page, "mistakes")
    assert mistakes.count('class="shot"') == 8 and "Showing all 8" in mistakes
    assert "allReal</span> → <span class=\"pr\">allFake" in mistakes or "allFake</span> → " in mistakes
    assert re.search(r"\d+\.\d%", mistakes)          # probabilities shown
    flagged = section_html(page, "label-errors")
    assert flagged.count('class="shot"') == len([r for r in csv.DictReader(run.mistakes_csv.open())
                                                 if r["label_issue"] == "1"])
    enhance = section_html(page, "enhance")
    for transform in ("gamma", "hist_eq", "clahe"):
        assert f">{transform}<" in enhance
    assert 'class="num gain"' in enhance and 'class="num loss"' in enhance
    assert enhance.count("<img ") == 1 + 3           # summary chart + per-image figures
    issues = section_html(page, "label-issues")
    assert "4 of 120 images of the train split flagged" in issues and "91.2%" in issues
    assert issues.count("<img ") == 1 and "odd_3.png" in issues
    assert re.search(r'<th scope="col"[^>]*>precision</th>', page)
    assert "table.sortable" in page                  # the sorting script is inline
    assert_self_contained(page)


def add_other_evaluations(run: RunDir, classes: Sequence[str], elsewhere: Path) -> tuple[EvaluationDir, ...]:
    """Two more evaluations: another data folder's val split, and the run's own held-out test split."""
    other = run.evaluation_dir(elsewhere, "val", "best")
    add_evaluation(run, classes, 3, other, data=str(elsewhere), data_name="data-1234abcd", own_data=False,
                   optimistic=False, selection=None)
    test = run.evaluation_dir(None, "test", "best")
    add_evaluation(run, classes, 4, test, split="test", optimistic=False,
                   selection="held out (used neither for training nor for choosing the checkpoint)")
    return other, test


def test_every_evaluation_is_listed_with_its_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    classes = ("allReal", "allFake")
    run = make_full_run(tmp_path / "run", classes)
    own = json.loads(run.evaluation_json.read_text())
    other, test = add_other_evaluations(run, classes, tmp_path / "elsewhere" / "data")
    page = build_report(run, capsys)
    table = section_html(page, "evaluations")
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]
    assert len(rows) == 3
    assert "digits-0a1b2c3d" in rows[0] and "the run folder" in rows[0] and "also: mistakes, enhance" in rows[0]
    assert 'class="badge">optimistic' in rows[0] and "selected on val" in rows[0]
    labelled = {r for r in rows[1:] if "data-1234abcd" in r and str(tmp_path / "elsewhere" / "data") in r}
    assert len(labelled) == 1 and other.root.relative_to(run.root).as_posix() in labelled.pop()
    held = [r for r in rows[1:] if ">test<" in r]
    assert len(held) == 1 and "held out" in held[0] and "optimistic" not in held[0]
    assert table.count("optimistic</span>") == 1
    assert f"{100 * own['accuracy']:.1f}%" in rows[0]
    summary = section_html(page, "summary")
    assert "evaluated accuracy (val, selected on val: optimistic)" in summary
    test_accuracy = json.loads(test.evaluation_json.read_text())["accuracy"]
    assert "test accuracy (held out)" in summary and f"{100 * test_accuracy:.1f}%" in summary
    assert "optimistic" in section_html(page, "confusion")
    assert_self_contained(page)


def test_an_unreadable_evaluation_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    classes = ("a", "b")
    run = make_full_run(tmp_path / "run", classes)
    other, _ = add_other_evaluations(run, classes, tmp_path / "elsewhere")
    other.evaluation_json.write_text("[1, 2]", encoding="utf-8")
    page = build_report(run, capsys)
    table = section_html(page, "evaluations")
    name = other.root.relative_to(run.root).as_posix()
    assert f"{name}/evaluation.json does not have the expected layout" in table
    assert len(re.findall(r"<tr>", table)) == 1 + 3     # still listed, with dashes


def test_twelve_classes_three_hundred_mistakes_are_capped(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    classes = tuple(f"class_{k:02d}" for k in range(12))
    run = make_full_run(tmp_path / "many", classes, num_mistakes=300, num_figures=30)
    page = build_report(run, capsys)
    mistakes = section_html(page, "mistakes")
    assert mistakes.count('class="shot"') == MAX_MISTAKES_SHOWN
    assert f"Showing {MAX_MISTAKES_SHOWN} of 300" in mistakes and "mistakes/mistakes.csv" in mistakes
    assert "#1 ·" in mistakes and "#48 ·" in mistakes and "#49 ·" not in mistakes   # the worst first
    assert "Showing 12 of 30 per-image figures" in section_html(page, "enhance")
    assert section_html(page, "counts").count("<tr>") == 1 + 12 + 1   # head, classes, total
    assert len(page) < 6_000_000
    assert_self_contained(page)


def test_names_with_html_characters_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    classes = ('<b>cat</b>', 'dog "quoted" & \'single\'', "żółw 🐢")
    names = ["x<img src=x onerror=alert(1)>.png", 'a"onerror="alert(2).png', "zdjęcie & <i>.png"]
    run = make_train_run(tmp_path / "run <&>", classes)
    add_evaluation(run, classes)
    add_mistakes(run, classes, 3, names)
    page = build_report(run, capsys)
    assert "<img src=x" not in page and "<b>cat</b>" not in page and "<i>.png" not in page
    assert '"onerror=' not in page
    assert "&lt;b&gt;cat&lt;/b&gt;" in page and "x&lt;img src=x onerror=alert(1)&gt;.png" in page
    assert "żółw 🐢" in page and "dog &#34;quoted&#34; &amp; &#39;single&#39;" in page   # markupsafe's entities
    assert page.count("<script>") == 1
    assert section_html(page, "mistakes").count('class="shot"') == 3
    assert "image not available" not in page         # copies with odd names are still found
    assert_self_contained(page)


def test_run_without_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    classes = ("a", "b")
    run = make_full_run(tmp_path / "perfect", classes, num_mistakes=0)
    page = build_report(run, capsys)
    assert "No mistakes" in section_html(page, "mistakes")
    assert "Not run yet" not in section_html(page, "label-errors")
    assert 'class="shot"' not in section_html(page, "mistakes") + section_html(page, "label-errors")


def test_unreadable_files_are_reported_not_fatal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_train_run(tmp_path / "run", ("a", "b"))
    run.evaluation_json.write_text("{not json", encoding="utf-8")
    run.summary_json.unlink()
    add_mistakes(run, ("a", "b"), 2)
    (run.root / "mistakes" / "a" / "b" / "img_0001.png").write_bytes(b"not a png")
    assert main(["report", str(run.root)]) == 0
    captured = capsys.readouterr()
    assert "evaluation.json" in captured.err
    page = run.report_html.read_text(encoding="utf-8")
    assert "could not read evaluation.json" in section_html(page, "confusion")
    assert "summary.json is missing" in section_html(page, "summary")
    assert "image not available" in page           # a broken copy never becomes a broken <img>


def test_copy_paths_outside_the_run_are_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_train_run(tmp_path / "run", ("a", "b"))
    add_mistakes(run, ("a", "b"), 1)
    _sample_image("secret", 0).save(tmp_path / "outside.png")
    rows = list(csv.reader(run.mistakes_csv.read_text().splitlines()))
    rows[1][2] = "../outside.png"
    _write_csv(run.mistakes_csv, rows[0], rows[1:])
    page = build_report(run, capsys)
    assert "image not available" in section_html(page, "mistakes")


def test_missing_run_folder_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 1
    assert "no such run folder" in capsys.readouterr().err


@pytest.mark.parametrize("num_classes", [2, 50])
def test_confusion_matrix_plot_is_readable(tmp_path: Path, num_classes: int) -> None:
    classes = [f"c{k}" for k in range(num_classes)]
    matrix = np.eye(num_classes, dtype=int) * 7 + 1
    path = plots.plot_confusion_matrix(matrix, classes, tmp_path / "cm.png", normalize="true")
    with Image.open(path) as image:
        width, height = image.size
    assert 300 < width < 2400 and 300 < height < 2400
    assert plots.render_confusion_matrix(matrix.tolist(), classes, normalize=None)[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="normalize"):
        plots.plot_confusion_matrix(matrix, classes, tmp_path / "x.png", normalize="rows")


def test_training_curves_tolerate_blank_and_single_rows(tmp_path: Path) -> None:
    rows = [{"step": "5", "epoch": "0.5", "train_loss": "", "val_loss": "0.9", "val_acc": "0.6", "lr": ""}]
    path = tmp_path / "curves.png"
    path.write_bytes(plots.render_training_curves(rows, best_step=5))
    with Image.open(path) as image:
        assert image.size[0] > 800


def test_report_never_imports_torch(tmp_path: Path) -> None:
    """The page is drawn from files only: writing it must not even import torch."""
    import subprocess
    import sys

    run = make_full_run(tmp_path / "run", num_mistakes=2, num_figures=1)
    code = ("import sys; from imgclf.cli import main; rc = main(['report', sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, str(run.root)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(run.report_html)


def test_near_duplicate_groups_of_the_runs_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    groups = [{"splits": ["train"], "images": [{"path": "a/x.png", "class": "a", "split": "train", "bits": 0},
                                               {"path": "a/x_small.jpg", "class": "a", "split": "train", "bits": 2}]},
              {"splits": ["train", "val"], "images": [{"path": "b/<y>.png", "class": "b", "split": "train", "bits": 0},
                                                      {"path": "b/y2.png", "class": "b", "split": "val", "bits": 4}]}]
    _write_json(data / "prepare_report.json", {"tool": "imgclf prepare", "near_duplicates": groups,
                                               "settings": {"near_duplicates": "report", "near_distance": 4}})
    run = make_train_run(tmp_path / "run", ("a", "b"))
    config = json.loads(run.config_json.read_text())
    _write_json(run.config_json, {**config, "data": str(data)})
    body = section_html(build_report(run, capsys), "near-duplicates")
    assert "2 group(s) of 4 images within 4 bits" in body and "1 span several splits" in body
    assert body.index("b/&lt;y&gt;.png") < body.index("a/x.png")       # groups across splits first, escaped
    (data / "prepare_report.json").write_text("{broken", encoding="utf-8")
    assert "could not read" in section_html(build_report(run, capsys), "near-duplicates")
