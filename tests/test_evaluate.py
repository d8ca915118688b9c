"""evaluate: one row per image, the numbers train logged, the artifacts the report reads."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import imgclf
from imgclf.artifacts import RunDir
from imgclf.cli import main


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("which", ["last", "best"])
def test_evaluate_agrees_with_what_train_logged(trained_run: Path, which: str) -> None:
    run = RunDir(trained_run)
    result = imgclf.evaluate(trained_run, checkpoint=which)
    summary = json.loads(run.summary_json.read_text())
    logged = summary["final" if which == "last" else "best"]
    assert result.accuracy == pytest.approx(logged["val_acc"], abs=1e-6)
    assert result.loss == pytest.approx(logged["val_loss"], abs=1e-5)


def test_predictions_csv_has_each_val_image_exactly_once(trained_run: Path, split_data: Path) -> None:
    imgclf.evaluate(trained_run)
    run = RunDir(trained_run)
    predicted = rows(run.predictions_csv)
    val_files = sorted(str(p) for p in (split_data / "val").rglob("*.png"))
    assert sorted(r["path"] for r in predicted) == val_files
    classes = json.loads(run.classes_json.read_text())
    for r in predicted:
        assert sum(float(r[f"prob_{c}"]) for c in classes) == pytest.approx(1.0, abs=1e-4)
        assert r["correct"] == str(int(r["true"] == r["predicted"]))
    evaluation = json.loads(run.evaluation_json.read_text())
    assert sum(map(sum, evaluation["confusion_matrix"])) == len(val_files)
    assert run.confusion_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(rows(run.confusion_csv)) == len(classes)


def test_evaluate_on_a_missing_split_says_what_to_do(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(trained_run), "--split", "test"]) == 1
    err = capsys.readouterr().err
    assert "no 'test' split" in err and "imgclf prepare" in err


def test_evaluate_on_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tmp_path)]) == 1
    assert "not a run folder" in capsys.readouterr().err


def test_preprocess_is_applied_alike_in_training_and_evaluation(split_data: Path, tmp_path: Path) -> None:
    """--preprocess runs once on the cached images in training and per batch in evaluate: same numbers."""
    run = tmp_path / "pre"
    imgclf.train(split_data, out=run, model="small_cnn", epochs=1, batch_size=16, img_size=32,
                 precision="fp32", preprocess="clahe")
    logged = json.loads(RunDir(run).summary_json.read_text())["final"]
    result = imgclf.evaluate(run, checkpoint="last", precision="fp32")
    assert result.accuracy == pytest.approx(logged["val_acc"], abs=1e-6)
    assert result.loss == pytest.approx(logged["val_loss"], abs=1e-5)
