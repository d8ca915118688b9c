"""imgclf stats and imgclf show on prepared folders and plain class trees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_class_folders
from PIL import Image

from imgclf.cli import main
from imgclf.commands.prepare import run as run_prepare
from imgclf.config import PrepareConfig
from imgclf.data.stats import compute_channel_stats, imbalance_warning


@pytest.fixture
def prepared(class_folders: Path, tmp_path: Path) -> Path:
    run_prepare(PrepareConfig(src=class_folders, dst=tmp_path / "data"))
    return tmp_path / "data"


def test_stats_json_counts_sizes_and_mean_std(prepared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(prepared), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["splits"] == {"train": 24, "val": 6}
    assert stats["counts"]["circle"] == {"train": 8, "val": 2}
    assert stats["sizes"]["width"] == {"min": 32, "median": 32, "max": 32}
    assert stats["sizes"]["most_common"] == [{"size": "32x32", "count": 30}]
    train = sorted((prepared / "train").rglob("*.png"))
    pixels = np.concatenate([np.asarray(Image.open(p).convert("RGB")).reshape(-1, 3) / 255.0 for p in train])
    norm = stats["normalization"]
    assert norm["split"] == "train" and norm["num_images"] == 24
    assert np.allclose(norm["rgb"]["mean"], pixels.mean(axis=0), atol=1e-5)
    assert np.allclose(norm["rgb"]["std"], pixels.std(axis=0), atol=1e-5)
    assert len(norm["gray"]["mean"]) == 1 and stats["warnings"] == []


def test_stats_table_on_plain_tree_warns_about_imbalance(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    src = make_class_folders(tmp_path / "raw", ("circle",), per_class=13, size=16)
    make_class_folders(src, ("square",), per_class=4, size=16)
    assert main(["stats", str(src)]) == 0
    out, err = capsys.readouterr()
    assert "all" in out and "circle" in out and "Normalize" in out
    assert "imbalance" in err and "'circle' has 13" in err


def test_imbalance_threshold() -> None:
    assert imbalance_warning({"a": 30, "b": 10}) is None
    assert "3.1x" in imbalance_warning({"a": 31, "b": 10})


def test_compute_channel_stats_grey_and_subset(tmp_path: Path) -> None:
    for i, value in enumerate((0, 255)):
        Image.new("L", (4, 4), value).save(tmp_path / f"{i}.png")
    paths = sorted(tmp_path.glob("*.png"))
    rgb = compute_channel_stats(paths, channels=3)
    assert rgb.mean == (0.5, 0.5, 0.5) and rgb.std == (0.5, 0.5, 0.5) and rgb.num_pixels == 32
    assert compute_channel_stats(paths, channels=1, max_images=1).num_images == 1


def test_stats_on_missing_or_empty_folder_exits_1(tmp_path: Path) -> None:
    assert main(["stats", str(tmp_path / "nope")]) == 1
    (tmp_path / "empty").mkdir()
    assert main(["stats", str(tmp_path / "empty")]) == 1


def test_show_writes_grid_and_refuses_to_overwrite(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    assert main(["show", str(prepared), "--out", str(out), "--n", "5", "--seed", "1"]) == 0
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 200
    first = out.read_bytes()
    assert main(["show", str(prepared), "--out", str(out)]) == 1
    assert out.read_bytes() == first
    assert main(["show", str(prepared), "--out", str(out), "--force", "--split", "val"]) == 0
    assert main(["show", str(prepared), "--out", str(tmp_path / "x.png"), "--split", "test"]) == 1


def test_show_samples_are_seeded(prepared: Path) -> None:
    from imgclf.commands.show import pick_samples

    a = pick_samples(prepared, "train", 6, seed=3)
    assert a == pick_samples(prepared, "train", 6, seed=3) != pick_samples(prepared, "train", 6, seed=4)
    assert all(path.parent.name == title for path, title in a)


def test_show_augmented(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "aug.png"
    assert main(["show", str(prepared), "--out", str(out), "--augmented", "--img-size", "32", "--n", "4"]) == 0
    assert out.stat().st_size > 0
