"""``imgclf mistakes`` and ``imgclf enhance`` end to end on a small trained run."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from imgclf.artifacts import RunDir
from imgclf.cli import main
from tests.conftest import tree_digest

inference = pytest.importorskip("imgclf.engine.inference")


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run_and_data(trained_run: Path, split_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A private copy of the shared run, and data whose val split has two deliberately wrong labels."""
    root = tmp_path_factory.mktemp("mistakes")
    run = root / "run"
    shutil.copytree(trained_run, run)
    data = root / "data"
    shutil.copytree(split_data, data)
    for name in ("circle_000.png", "circle_001.png"):
        (data / "val" / "circle" / name).rename(data / "val" / "square" / f"mislabelled_{name}")
    return run, data


def expected_mistakes(run: Path, data: Path) -> tuple[int, list[Path]]:
    loaded = inference.load_run_model(run, "best", "cpu", "fp32")
    paths, targets, images = inference.load_split(loaded, data, "val")
    probs = inference.predict_probs(loaded, images).numpy()
    wrong = probs.argmax(1) != targets.numpy()
    return int(wrong.sum()), [p for p, w in zip(paths, wrong) if w]


def test_mistakes_copies_ranks_and_flags(run_and_data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run, data = run_and_data
    before = tree_digest(data)
    folder = RunDir(run).evaluation_dir(data, "val", "best")        # another data folder: its own place
    stale = folder.mistakes_dir / "old.txt"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("from an earlier run")
    own_before = tree_digest(run / "mistakes") if (run / "mistakes").is_dir() else {}
    assert main(["mistakes", str(run), str(data), "--device", "cpu", "--precision", "fp32"]) == 0
    num_wrong, wrong_paths = expected_mistakes(run, data)
    rows = read_rows(folder.mistakes_csv)
    classes = json.loads((run / "classes.json").read_text())
    assert list(rows[0]) == ["rank", "path", "copy", "true", "predicted", *(f"prob_{c}" for c in classes),
                             "loss", "margin", "label_issue", "self_confidence", "heatmap_predicted", "heatmap_true"]
    assert len(rows) == num_wrong >= 1
    assert sorted(r["path"] for r in rows) == sorted(map(str, wrong_paths))
    losses = [float(r["loss"]) for r in rows]
    assert losses == sorted(losses, reverse=True) and [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    for row in rows:
        copy = run / row["copy"]
        assert copy.parent == folder.mistakes_dir / row["true"] / row["predicted"]
        assert copy.read_bytes() == Path(row["path"]).read_bytes()
        assert copy.name.startswith(f"{int(row['rank']):04d}_")
        assert float(row["margin"]) >= 0 and row["label_issue"] in ("0", "1")
    assert tree_digest(data) == before  # copied, never moved
    assert not stale.exists()
    assert folder.mistakes_gallery_png.stat().st_size > 0 and folder.label_errors_png.is_file()
    assert (tree_digest(run / "mistakes") if (run / "mistakes").is_dir() else {}) == own_before
    assert "rank" in capsys.readouterr().out


def test_enhance_needs_mistakes_first(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("mistakes", "enhance"))
    assert main(["enhance", str(run), "--device", "cpu"]) == 1
    assert "imgclf mistakes" in capsys.readouterr().err


def test_bad_set_is_a_usage_error_naming_the_flag(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enhance", str(trained_run), "--set", "gamma.q=2"]) == 2
    err = capsys.readouterr().err
    assert "--set" in err and "gamma.g" in err


def check_enhance_outputs(enhance: Path, num_versions: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    summary = read_rows(enhance / "summary.csv")
    per_image = read_rows(enhance / "per_image.csv")
    assert list(summary[0]) == ["transform", "params", "num_images", "accuracy", "rescued", "broken", "net_gain",
                                "mean_delta_true_prob"]
    assert len(summary) == num_versions and summary[0]["transform"] == "original"
    gains = [int(r["net_gain"]) for r in summary[1:]]
    assert gains == sorted(gains, reverse=True)
    originals = {r["path"]: r["correct"] == "1" for r in per_image if r["transform"] == "original"}
    for row in summary[1:]:
        mine = [r for r in per_image if r["transform"] == row["transform"] and r["params"] == row["params"]]
        assert len(mine) == len(originals) == int(row["num_images"])
        rescued = sum(r["correct"] == "1" and not originals[r["path"]] for r in mine)
        broken = sum(r["correct"] == "0" and originals[r["path"]] for r in mine)
        assert (int(row["rescued"]), int(row["broken"])) == (rescued, broken)
        assert int(row["net_gain"]) == rescued - broken
        assert float(row["accuracy"]) == pytest.approx(np.mean([r["correct"] == "1" for r in mine]), abs=1e-6)
    return summary, per_image


def test_enhance_on_mistakes_and_on_val(run_and_data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run, data = run_and_data
    folder = RunDir(run).evaluation_dir(data, "val", "best")
    if not folder.mistakes_csv.is_file():
        assert main(["mistakes", str(run), str(data), "--device", "cpu", "--precision", "fp32"]) == 0
    args = ["--transforms", "gamma", "histeq", "clahe", "--set", "gamma.g=0.5,2", "--figures", "2",
            "--device", "cpu", "--precision", "fp32"]
    assert main(["enhance", str(run), "--data", str(data), *args]) == 0      # the mistakes found on DATA
    summary, _ = check_enhance_outputs(folder.enhance_dir, 1 + 4)
    assert summary[0]["accuracy"] == "0.000000"  # every image in the set is a mistake
    assert all(r["broken"] == "0" for r in summary)
    assert sorted(p.name[:4] for p in folder.enhance_figures_dir.glob("*.png")) == ["001_", "002_"]
    assert (folder.enhance_dir / "summary.png").stat().st_size > 0
    assert "net_gain" in capsys.readouterr().out
    assert main(["enhance", str(run), str(data / "val"), *args]) == 0
    images = RunDir(run).evaluation_dir(data / "val", "images", "best")
    summary, per_image = check_enhance_outputs(images.enhance_dir, 1 + 4)
    assert int(summary[0]["num_images"]) == len(list((data / "val").rglob("*.png")))


def test_enhance_on_an_unlabelled_folder(run_and_data: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = run_and_data
    folder = tmp_path / "new"
    folder.mkdir()
    for source in sorted((data / "val" / "cross").glob("*.png"))[:3]:
        shutil.copy(source, folder / source.name)
    assert main(["enhance", str(run), "--on", str(folder), "--transforms", "log", "--figures", "1",
                 "--device", "cpu"]) == 0
    enhanced = RunDir(run).evaluation_dir(folder, "images", "best")
    summary = read_rows(enhanced.enhance_summary_csv)
    assert [(r["transform"], r["num_images"], r["accuracy"], r["rescued"]) for r in summary] == [
        ("original", "3", "", "0"), ("log", "3", "", "0")]
    assert {r["correct"] for r in read_rows(enhanced.enhance_per_image_csv)} == {""}
    assert len(list(enhanced.enhance_figures_dir.glob("*.png"))) == 1


def test_bad_counts_are_usage_errors(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enhance", str(trained_run), "--figures", "-1", "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert "--figures" in err and "--batch-size" in err


def test_enhance_split_and_on_must_agree(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enhance", str(trained_run), "--on", "test", "--split", "val"]) == 2
    assert "--split val and --on test name different splits" in capsys.readouterr().err


def test_enhance_reads_the_mistakes_of_the_matching_evaluation(trained_run: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    assert main(["enhance", str(trained_run), "--data", str(other), "--split", "test", "--checkpoint", "last",
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    expected = RunDir(trained_run).evaluation_dir(other, "test", "last").mistakes_csv
    assert f"{expected} not found" in err
    assert f"imgclf mistakes {trained_run} {other} --split test --checkpoint last" in err
