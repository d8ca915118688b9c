"""The whole pipeline on tiny real image files, as a user runs it from the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from conftest import make_class_folders, tree_digest

from imgclf.artifacts import RunDir
from imgclf.cli import main


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_prepare_train_evaluate_mistakes_enhance_predict_report_resume(tmp_path: Path) -> None:
    raw = make_class_folders(tmp_path / "raw", per_class=12, size=32)
    before = tree_digest(raw)
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["prepare", str(raw), str(data), "--val", "0.25", "--seed", "1"]) == 0
    assert main(["train", str(data), "--out", str(run), "--model", "small_cnn", "--epochs", "2",
                 "--batch-size", "9", "--img-size", "32", "--lr", "0.02"]) == 0
    steps = [int(r["step"]) for r in csv_rows(RunDir(run).metrics_csv)]
    assert steps == [3, 6]                                   # 27 train images / 9 per step
    assert main(["evaluate", str(run)]) == 0
    predictions = csv_rows(RunDir(run).predictions_csv)
    assert len(predictions) == 9                             # each val image exactly once
    wrong = sum(r["correct"] == "0" for r in predictions)
    own = tree_digest(run)
    assert main(["evaluate", str(run), "--checkpoint", "last"]) == 0     # another evaluation: its own folder
    last = RunDir(run).evaluation_dir(None, "val", "last")
    assert len(csv_rows(last.predictions_csv)) == 9
    assert {k: v for k, v in tree_digest(run).items() if not k.startswith("evaluations/")} == own
    assert main(["mistakes", str(run)]) == 0
    assert len(csv_rows(RunDir(run).mistakes_csv)) == wrong
    assert main(["enhance", str(run), "--on", "val", "--figures", "2"]) == 0
    summary = csv_rows(RunDir(run).enhance_summary_csv)
    assert {"original", "gamma", "histeq", "clahe"} <= {r["transform"] for r in summary}
    assert main(["predict", str(run), str(data / "val"), "--topk", "2"]) == 0
    assert main(["report", str(run)]) == 0
    html = RunDir(run).report_html.read_text(encoding="utf-8")
    assert 'id="mistakes"' in html and 'id="enhance"' in html
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 0
    assert [int(r["step"]) for r in csv_rows(RunDir(run).metrics_csv)] == [3, 6, 9]
    assert json.loads(RunDir(run).summary_json.read_text())["steps"] == 9
    assert tree_digest(raw) == before                        # the source tree was only read
