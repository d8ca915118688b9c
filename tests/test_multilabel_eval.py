"""evaluate and mistakes on a multi-label run: per-label metrics, wrong labels per image."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_toolbox_e2e import write_attribute_images

import imgclf
from imgclf.artifacts import RunDir


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_and_mistakes_of_a_multilabel_run(tmp_path: Path) -> None:
    write_attribute_images(tmp_path / "raw", per_combo=6)
    imgclf.prepare(tmp_path / "raw", tmp_path / "data", val=0.34)
    run = tmp_path / "run"
    imgclf.train(tmp_path / "data", out=run, model="small_cnn", img_size=32, precision="fp32", batch_size=8,
                 epochs=2, seed=0)
    logged = rows(RunDir(run).metrics_csv)[-1]
    result = imgclf.evaluate(run, checkpoint="last", precision="fp32")
    folder = RunDir(run).evaluation_dir(None, "val", "last")
    summary = json.loads(folder.evaluation_json.read_text())
    assert summary["multi_label"] and [c["class"] for c in summary["per_class"]] == ["blue", "circle", "red", "square"]
    assert result.accuracy == pytest.approx(float(logged["val_acc"]), abs=1e-6)     # per-label accuracy
    assert result.loss == pytest.approx(float(logged["val_loss"]), abs=1e-5)        # the one multi-label BCE
    assert summary["map"] == pytest.approx(float(logged["val_map"]), abs=1e-6)
    predicted = rows(folder.predictions_csv)
    assert len(predicted) == summary["num_images"] == 8
    assert all(set(r["true"].split(";")) <= {"blue", "circle", "red", "square"} for r in predicted)
    found = imgclf.mistakes(run, checkpoint="last", precision="fp32")
    mistakes = rows(folder.mistakes_csv)
    assert found.num_mistakes == len(mistakes) == sum(r["correct"] == "0" for r in predicted)
    for m in mistakes:
        assert (run / m["copy"]).read_bytes() == Path(m["path"]).read_bytes()
        assert m["missing"] or m["extra"]
    assert imgclf.report(run).exit_code == 0
    assert 'id="per-class"' in RunDir(run).report_html.read_text(encoding="utf-8")
