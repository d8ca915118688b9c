"""imgclf explain and the heatmaps of imgclf mistakes, end to end on real pixels."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

import imgclf
from imgclf.artifacts import RunDir
from imgclf.cli import main
from tests.saliency_data import make_patch_data, peak_on_patch


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def patch_hits(root: Path, boxes: dict[Path, tuple[int, int, int, int]], model: str, layer: str = "auto",
               **train: object) -> tuple[float, float, str]:
    """(val accuracy, share of val images whose true-class heatmap peaks on the patch, layer used)."""
    run = root / "run"
    imgclf.train(root / "data", out=run, model=model, batch_size=32, seed=0, **train)
    accuracy = imgclf.evaluate(run).accuracy
    result = imgclf.explain(run, limit=0, layer=layer)
    rows = read_rows(result.csv)
    by_path = {p.resolve(): box for p, box in boxes.items()}
    assert len(rows) == len(boxes)
    hits = [peak_on_patch((int(r["peak_true_row"]), int(r["peak_true_col"])), by_path[Path(r["path"]).resolve()])
            for r in rows]
    return accuracy, sum(hits) / len(hits), result.layer


def test_heatmaps_peak_on_the_patch_that_decides_the_class(tmp_path: Path) -> None:
    boxes = make_patch_data(tmp_path / "data", train_per_class=80, val_per_class=25, size=32, patch=8)
    accuracy, hit_rate, layer = patch_hits(tmp_path, boxes, "small_cnn", img_size=32, epochs=6, optimizer="adam",
                                           lr=0.002)
    assert accuracy >= 0.95
    assert hit_rate >= 0.90, f"only {hit_rate:.0%} of the heatmaps peak on the patch"
    assert layer == "features"


@pytest.mark.slow
# A heatmap is as fine as its layer: small_cnn's map is 12 x 12 (5 px cells at 64 px), resnet18's layer2 is
# 8 x 8 (8 px cells; layer4 would be 2 x 2), so its patch spans two cells (at 12 px, 90.0% of the peaks hit it).
@pytest.mark.parametrize(("model", "layer", "size", "patch"), [("small_cnn", "auto", 64, 10),
                                                                ("resnet18", "layer2", 64, 16)])
def test_heatmaps_peak_on_the_patch_three_classes(tmp_path: Path, model: str, layer: str, size: int,
                                                  patch: int) -> None:
    boxes = make_patch_data(tmp_path / "data", train_per_class=200, val_per_class=50, size=size, patch=patch,
                            classes=("redgreen", "blueyellow", "magentacyan"), seed=1)
    accuracy, hit_rate, used = patch_hits(tmp_path, boxes, model, layer, img_size=size, epochs=8,
                                          optimizer="adam", lr=0.002)
    print(f"{model} ({used}): val accuracy {accuracy:.3f}, heatmap peak on the patch for {hit_rate:.1%} "
          f"of {len(boxes)} val images")
    assert accuracy >= 0.95 and hit_rate >= 0.90


@pytest.fixture(scope="module")
def run_and_data(trained_run: Path, split_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A private copy of the shared run whose own data (a copy) has two deliberately wrong labels in val."""
    root = tmp_path_factory.mktemp("explain")
    run, data = root / "run", root / "data"
    shutil.copytree(trained_run, run)
    shutil.copytree(split_data, data)
    for name in ("circle_000.png", "circle_001.png"):
        (data / "val" / "circle" / name).rename(data / "val" / "square" / f"mislabelled_{name}")
    config = json.loads(RunDir(run).config_json.read_text())
    config["data"], config["derived"]["data_path"] = str(data), str(data.resolve())
    RunDir(run).config_json.write_text(json.dumps(config))
    return run, data


def test_explain_files_inside_and_outside_the_data(run_and_data: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run, data = run_and_data
    inside = data / "val" / "square" / "mislabelled_circle_000.png"
    outside = tmp_path / "loose.png"
    shutil.copy(data / "val" / "cross" / "cross_000.png", outside)
    assert main(["explain", str(run), str(inside), str(outside), "--device", "cpu"]) == 0
    assert "Grad-CAM on layer 'features'" in capsys.readouterr().err
    common = RunDir(run).evaluation_dir(Path(os.path.commonpath([inside.parent, tmp_path])), "images", "best")
    rows = {Path(r["path"]).name: r for r in read_rows(common.explain_csv)}
    assert rows["mislabelled_circle_000.png"]["true"] == "square"     # the class folder it sits in
    assert rows["loose.png"]["true"] == "" and rows["loose.png"]["heatmap_true"] == ""
    for row in rows.values():
        with Image.open(run / row["heatmap_predicted"]) as image:
            assert image.size == (160, 160) and image.mode == "RGB"
    labelled = rows["mislabelled_circle_000.png"]
    if labelled["predicted"] != "square":
        assert labelled["heatmap_true"].endswith("__true.png") and (run / labelled["heatmap_true"]).is_file()
    info = json.loads(common.explain_json.read_text())
    assert info["layer"] == "features" and info["num_images"] == 2
    assert main(["explain", str(run), str(outside), "--split", "val"]) == 2   # IMAGES or a split, not both


def test_explain_a_split_beside_its_evaluation(run_and_data: tuple[Path, Path], split_data: Path) -> None:
    run, data = run_and_data
    result = imgclf.explain(run, data=data, layer="features.2", limit=4, gallery=4)   # the run's own val
    assert result.layer == "features.2" and result.num_images == 4 and result.csv == RunDir(run).explain_csv
    assert RunDir(run).explain_gallery_png.stat().st_size > 5000
    assert len(list((RunDir(run).explain_dir / "heatmaps").glob("*__pred.png"))) == 4
    other = imgclf.explain(run, data=split_data, split="train", checkpoint="last", limit=2, gallery=0)
    folder = RunDir(run).evaluation_dir(split_data, "train", "last")
    assert other.csv == folder.explain_csv and len(read_rows(folder.explain_csv)) == 2
    assert RunDir(run).explain_csv.is_file()                 # the other evaluation's explain is untouched


def test_explain_bad_layer_is_a_usage_error(run_and_data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = run_and_data
    assert main(["explain", str(run), "--layer", "nope"]) == 2
    assert "--layer nope: no such module" in capsys.readouterr().err


def test_mistakes_draw_heatmaps_beside_each_mistake(run_and_data: tuple[Path, Path]) -> None:
    run, data = run_and_data
    result = imgclf.mistakes(run, data, heatmaps=1, device="cpu", precision="fp32")
    assert result.csv == RunDir(run).mistakes_csv             # the run's own data and val split
    rows = read_rows(RunDir(run).mistakes_csv)
    assert len(rows) == result.num_mistakes >= 2
    first, rest = rows[0], rows[1:]
    assert first["heatmap_predicted"] == "mistakes/_gradcam/0001__pred.png"
    assert first["heatmap_true"] == "mistakes/_gradcam/0001__true.png"
    assert all((run / first[k]).is_file() for k in ("heatmap_predicted", "heatmap_true"))
    assert all(r["heatmap_predicted"] == "" for r in rest)
    assert RunDir(run).mistakes_heatmaps_png.is_file()

    imgclf.report(run)
    page = RunDir(run).report_html.read_text(encoding="utf-8")
    assert page.count('class="cams"') >= 1 and f"where it sees {first['true']}" in page
