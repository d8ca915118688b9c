"""evaluate: one row per image, the numbers train logged, the artifacts the report reads."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from conftest import make_class_folders, make_split_tree
from test_report import section_html

import imgclf
from imgclf.artifacts import RunDir
from imgclf.cli import main
from imgclf.data.folders import fingerprint_data


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("which", ["last", "best"])
def test_evaluate_agrees_with_what_train_logged(trained_run: Path, which: str) -> None:
    run = RunDir(trained_run)
    result = imgclf.evaluate(trained_run, checkpoint=which, precision="fp32")   # as trained_run trained
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


def test_evaluating_other_data_leaves_the_runs_own_evaluation_untouched(
        trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = RunDir(tmp_path / "run")
    shutil.copytree(trained_run, run.root, ignore=shutil.ignore_patterns("evaluations", "report.html"))
    assert main(["evaluate", str(run.root)]) == 0
    own_files = (run.evaluation_json, run.predictions_csv, run.confusion_csv, run.confusion_png)
    before = [p.read_bytes() for p in own_files]
    # two more data folders, both called "data", with a val split of their own
    others = [make_class_folders(tmp_path / site / "data" / "val", per_class=2, seed=seed).parent
              for seed, site in ((5, "a"), (6, "b"))]
    for other in others:
        assert main(["evaluate", str(run.root), str(other)]) == 0
    assert [p.read_bytes() for p in own_files] == before                 # byte-identical
    folders = [run.evaluation_dir(other, "val", "best") for other in others]
    assert len({f.root for f in folders}) == 2 and all(f.root.parent == run.evaluations_dir for f in folders)
    for other, folder in zip(others, folders):
        evaluation = json.loads(folder.evaluation_json.read_text())
        assert evaluation["data"] == str(other.resolve()) and evaluation["split"] == "val"
        assert evaluation["checkpoint"] == "best" and evaluation["num_images"] == 6
        assert evaluation["manifest_sha256"] == fingerprint_data(other)[0]
        assert evaluation["own_data"] is False and evaluation["optimistic"] is False
        assert sorted(r["path"] for r in rows(folder.predictions_csv)) == sorted(
            str(p) for p in (other / "val").rglob("*.png"))
    own = json.loads(run.evaluation_json.read_text())
    assert own["own_data"] is True and own["optimistic"] is True and own["num_images"] == 15
    capsys.readouterr()
    assert main(["report", str(run.root)]) == 0
    table = section_html(run.report_html.read_text(encoding="utf-8"), "evaluations")
    assert table.count("<tr>") == 1 + 3                                # the run's own and both others
    for evaluation in (own, *(json.loads(f.evaluation_json.read_text()) for f in folders)):
        assert evaluation["data"] in table and evaluation["data_name"] in table


@pytest.fixture(scope="module")
def run_with_test_split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-epoch run on data with train, val and a held-out test split."""
    root = tmp_path_factory.mktemp("held_out")
    data = make_split_tree(root / "data", train_per_class=8, val_per_class=3)
    make_class_folders(data / "test", per_class=4, seed=2)
    imgclf.train(data, out=root / "run", model="small_cnn", epochs=1, batch_size=8, img_size=32, seed=0)
    return root / "run", data


def test_test_split_is_reported_next_to_val_and_val_is_labelled_optimistic(
        run_with_test_split: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run, data = run_with_test_split
    assert main(["evaluate", str(run)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("val:", "test:"))]
    assert len(lines) == 2
    assert lines[0].startswith("val: 9 images") and "[selected on val (optimistic" in lines[0]
    assert lines[1].startswith("test: 12 images") and "[held out" in lines[1] and "optimistic" not in lines[1]
    own = json.loads(RunDir(run).evaluation_json.read_text())
    assert (own["split"], own["selected_on"], own["optimistic"], own["own_data"]) == ("val", "val", True, True)
    held = json.loads(RunDir(run).evaluation_dir(None, "test", "best").evaluation_json.read_text())
    assert (held["split"], held["optimistic"], held["num_images"]) == ("test", False, 12)
    assert held["data"] == str(data.resolve()) and held["selection"].startswith("held out")
    assert held["manifest_source"] == "file list"


def test_one_split_and_the_last_checkpoint(run_with_test_split: tuple[Path, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = run_with_test_split
    result = imgclf.evaluate(run, split="val", checkpoint="last")
    assert list(result.splits) == ["val"] and result.summary["optimistic"] is False
    folder = RunDir(run).evaluation_dir(None, "val", "last")
    assert result.folders["val"] == folder.root and folder.root.parent.name == "evaluations"
    assert json.loads(folder.evaluation_json.read_text())["selected_on"] is None
    assert "optimistic" not in capsys.readouterr().out


def test_two_classes_get_a_roc_curve(tmp_path: Path) -> None:
    data = make_split_tree(tmp_path / "data", train_per_class=6, val_per_class=3, classes=("circle", "square"))
    imgclf.train(data, out=tmp_path / "run", model="small_cnn", epochs=1, batch_size=6, img_size=32, seed=0)
    result = imgclf.evaluate(tmp_path / "run")
    assert result.summary["roc_auc"] is not None
    assert RunDir(tmp_path / "run").roc_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
