"""The report sections that explain a model: calibration (evaluate, calibrate) and Grad-CAM (explain, mistakes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgclf.artifacts import EvaluationDir, RunDir

from test_report import _calibration, add_calibration, add_evaluation, build_report, make_train_run, section_html


def test_evaluated_but_not_calibrated_shows_numbers_and_names_calibrate(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run = make_train_run(tmp_path / "run", ("a", "b", "c"))
    add_evaluation(run, ("a", "b", "c"))
    ece = json.loads(run.evaluation_json.read_text())["calibration"]["ece"]
    body = section_html(build_report(run, capsys), "calibration")
    assert f">{ece:.3f}<" in body and "ECE" in body and "Brier" in body
    assert body.count("<img ") == 1 and 'alt="reliability diagram"' in body
    assert "Not run yet" in body and f"<code>imgclf calibrate {run.root}</code>" in body
    assert "imgclf evaluate" not in body


def calibrated_run(tmp_path: Path) -> tuple[RunDir, EvaluationDir]:
    """A run evaluated on val, calibrated on val (T = 1.8), then evaluated on val and on a held-out test split."""
    run = make_train_run(tmp_path / "run", ("a", "b"))
    add_evaluation(run, ("a", "b"))
    test = add_calibration(run, ("a", "b"), temperature=1.8, held_out=True)
    assert test is not None
    return run, test


def test_calibrated_run_shows_every_evaluation_and_the_temperature(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run, test = calibrated_run(tmp_path)
    body = section_html(build_report(run, capsys), "calibration")
    assert "Not run yet" not in body
    assert "best weights: T = 1.800" in body and "val split of /data/digits" in body
    assert ">0.120<" in body and ">0.040<" in body      # ECE before and after on the fit split
    assert "T fitted on these images: optimistic" in body and ">held out<" in body
    assert "test split, best weights, temperature 1.800" in body   # the diagram shows the held-out split
    ece = json.loads(test.evaluation_json.read_text())["calibration"]["ece"]
    assert f">{ece:.3f}<" in body


def test_an_evaluation_older_than_the_temperature_is_flagged(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    run, test = calibrated_run(tmp_path)
    evaluation = json.loads(test.evaluation_json.read_text())
    evaluation["calibration"] = _calibration(np.random.default_rng(3), 2, 30, temperature=1.0)
    test.evaluation_json.write_text(json.dumps(evaluation))
    body = section_html(build_report(run, capsys), "calibration")
    assert "older temperature: evaluate again" in body
    assert "val split, best weights, temperature 1.800" in body   # no current held-out numbers: the first row


def test_old_evaluation_without_calibration_asks_for_evaluate(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    run = make_train_run(tmp_path / "run", ("a", "b"))
    add_evaluation(run, ("a", "b"))
    evaluation = json.loads(run.evaluation_json.read_text())
    del evaluation["calibration"]
    run.evaluation_json.write_text(json.dumps(evaluation))
    body = section_html(build_report(run, capsys), "calibration")
    assert "predates" in body and f"<code>imgclf evaluate {run.root}</code>" in body


# ------------------------------------------------------------------ Grad-CAM (explain section, mistakes cards)

def test_full_run_shows_heatmaps_beside_mistakes_and_an_explain_gallery(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from test_report import make_full_run

    run = make_full_run(tmp_path / "run", ("cat", "dog"), num_mistakes=8)
    page = build_report(run, capsys)
    mistakes = section_html(page, "mistakes")
    assert mistakes.count('class="cams"') == 4 and mistakes.count('<div class="cam">') == 8
    assert "No Grad-CAM heatmaps yet" not in mistakes and "where it sees" in mistakes
    explain = section_html(page, "explain")
    assert explain.count('class="shot"') == 6 and "layer4" in explain and "6 images" in explain
    assert "weights, in explain/;" in explain
    right = sum(1 for n in range(6) if n % 2 == (n // 2) % 2)
    assert explain.count('<span class="good">right</span>') == right
    assert explain.count('<div class="cam">') == right + 2 * (6 - right)   # a second map only where it was wrong


def test_mistakes_without_heatmaps_name_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_report import add_mistakes

    run = make_train_run(tmp_path / "run", ("a", "b"))
    add_mistakes(run, ("a", "b"), 3)
    page = build_report(run, capsys)
    assert f"imgclf mistakes {run.root} --heatmaps 48" in section_html(page, "mistakes")
    assert 'class="cams"' not in page
    explain = section_html(page, "explain")
    assert "Not run yet" in explain and f"<code>imgclf explain {run.root}</code>" in explain
