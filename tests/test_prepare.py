"""imgclf prepare end to end: bad files reported, counts add up, SRC untouched, re-runs identical."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import bad_files, draw_sample, make_class_folders, odd_images, tree_digest, write_files
from PIL import Image

from imgclf.cli import main
from imgclf.commands.prepare import run
from imgclf.config import PrepareConfig


def prepare(src: Path, dst: Path, **options: object):
    return run(PrepareConfig(src=src, dst=dst, **options))


def read_report(dst: Path) -> dict:
    return json.loads((dst / "prepare_report.json").read_text())


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """3 classes x 10 images, plus every kind of bad and odd file, hidden entries and duplicates."""
    src = make_class_folders(tmp_path / "raw")
    write_files(src / "circle", bad_files())
    write_files(src / "square", odd_images())
    shutil.copyfile(src / "circle" / "circle_000.png", src / "circle" / "copy_of_000.png")
    shutil.copyfile(src / "cross" / "cross_000.png", src / "square" / "cross_in_square.png")
    (src / ".ipynb_checkpoints").mkdir()
    draw_sample("circle", 50).save(src / ".ipynb_checkpoints" / "hidden.png")
    (src / "square" / ".DS_Store").write_bytes(b"\0")
    return src


def test_messy_source_counts_add_up_and_src_is_untouched(messy: Path, tmp_path: Path) -> None:
    before = tree_digest(messy)
    result = prepare(messy, tmp_path / "out")
    assert tree_digest(messy) == before
    report = read_report(tmp_path / "out")
    t = report["totals"]
    assert t == result.totals
    assert t["inputs"] == 30 + 5 + 7 + 2
    assert t["inputs"] == t["written"] + t["rejected"] + t["duplicates"] + t["conflicts"]
    assert {r["path"] for r in report["rejected"]} == {f"circle/{n}" for n in bad_files()}
    assert report["duplicates"] == [{"path": "circle/copy_of_000.png", "duplicate_of": "circle/circle_000.png"}]
    assert {c["path"] for c in report["conflicts"]} == {"cross/cross_000.png", "square/cross_in_square.png"}
    assert {"path": ".ipynb_checkpoints", "reason": "hidden folder"} in report["ignored"]
    converted = {c["path"] for c in report["converted"]}
    assert {f"square/{n}" for n in odd_images() if n != "grey16.png"} == converted
    manifest = (tmp_path / "out" / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "source,destination,sha256,class,split,width,height"
    assert len(manifest) - 1 == t["written"] == sum(sum(c.values()) for c in report["counts"].values())
    for line in manifest[1:]:
        assert (tmp_path / "out" / line.split(",")[1]).is_file()


def test_odd_modes_are_written_correctly(messy: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out"
    prepare(messy, dst, val=0.0)
    folder = dst / "train" / "square"
    with Image.open(folder / "grey16.png") as img:
        assert img.mode in ("I;16", "I") and np.asarray(img).max() == 63 * 1040
    with Image.open(folder / "cmyk.png") as img:
        assert img.mode == "RGB" and img.getpixel((4, 4))[0] > 200
    with Image.open(folder / "exif_rotated.png") as img:
        assert img.size == (10, 20)
    with Image.open(folder / "bit1.png") as img:
        assert img.mode == "L" and img.getpixel((0, 0)) == 255


def test_rerun_is_byte_identical_and_replaces_the_old_output(messy: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out"
    prepare(messy, dst, test=0.1)
    first = tree_digest(dst)
    (dst / "train" / "stale.png").write_bytes(b"x")
    prepare(messy, dst, test=0.1)
    assert tree_digest(dst) == first
    prepare(messy, tmp_path / "other", test=0.1, workers=1)
    assert (tmp_path / "other" / "manifest.csv").read_bytes() == (dst / "manifest.csv").read_bytes()
    prepare(messy, dst)  # without --test: the old test/ split goes away
    assert not (dst / "test").exists()
    assert not list(tmp_path.glob(".out.imgclf-*"))


def test_stratified_split_within_one_image(tmp_path: Path) -> None:
    src = tmp_path / "raw"
    make_class_folders(src, ("circle",), per_class=23)
    make_class_folders(src, ("square",), per_class=7)
    make_class_folders(src, ("cross",), per_class=3)
    counts = prepare(src, tmp_path / "out", val=0.2, test=0.1, seed=1).counts
    sizes = {"circle": 23, "square": 7, "cross": 3}
    for cls, n in sizes.items():
        assert abs(counts[cls].get("val", 0) - 0.2 * n) < 1 and abs(counts[cls].get("test", 0) - 0.1 * n) < 1
        assert sum(counts[cls].values()) == n


def test_dst_inside_src_or_src_inside_dst_is_refused(class_folders: Path, tmp_path: Path) -> None:
    before = tree_digest(class_folders)
    assert main(["prepare", str(class_folders), str(class_folders / "prepared")]) == 1
    assert main(["prepare", str(class_folders), str(class_folders)]) == 1
    assert main(["prepare", str(class_folders), str(tmp_path), "--force"]) == 1
    assert tree_digest(class_folders) == before and not (class_folders / "prepared").exists()


def test_foreign_non_empty_dst_needs_force_and_keeps_other_files(class_folders: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "mine"
    dst.mkdir()
    (dst / "notes.md").write_text("keep me")
    assert main(["prepare", str(class_folders), str(dst)]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["prepare", str(class_folders), str(dst), "--force"]) == 0
    assert (dst / "notes.md").read_text() == "keep me" and (dst / "manifest.csv").is_file()
    assert main(["prepare", str(class_folders), str(dst)]) == 0  # now it holds imgclf's report
    assert (dst / "notes.md").read_text() == "keep me"


def test_class_too_small_is_an_error_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_class_folders(tmp_path / "raw", ("circle", "square"), per_class=4)
    for extra in ("square_001.png", "square_002.png", "square_003.png"):
        (src / "square" / extra).unlink()
    assert main(["prepare", str(src), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "'square' (1 image)" in err and "--val 0" in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.imgclf-*"))
    assert main(["prepare", str(src), str(tmp_path / "out"), "--val", "0"]) == 0


def test_name_collisions_never_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "raw"
    (src / "a" / "x").mkdir(parents=True)
    (src / "a" / "y").mkdir(parents=True)
    draw_sample("circle", 1).save(src / "a" / "x" / "img.png")
    draw_sample("circle", 2).save(src / "a" / "y" / "img.png")
    draw_sample("circle", 3).save(src / "a" / "y" / "IMG.jpg")
    prepare(src, tmp_path / "out", val=0.0)
    written = sorted(p.name for p in (tmp_path / "out" / "train" / "a").iterdir())
    assert len(written) == 3 and "img.png" in written
    assert all(n.lower().startswith("img") for n in written)


@pytest.mark.parametrize("fmt,suffixes", [("keep", {".jpg", ".png"}), ("jpg", {".jpg"})])
def test_formats(tmp_path: Path, fmt: str, suffixes: set[str]) -> None:
    src = make_class_folders(tmp_path / "raw", ("circle",), per_class=3)
    make_class_folders(src, ("circle",), per_class=2, ext=".jpg", seed=5)
    prepare(src, tmp_path / "out", val=0.0, format=fmt)
    out = tmp_path / "out" / "train" / "circle"
    assert {p.suffix for p in out.iterdir()} == suffixes
    if fmt == "keep":
        assert (out / "circle_000.jpg").read_bytes() == (src / "circle" / "circle_000.jpg").read_bytes()


def test_label_files_multi_label_layout(tmp_path: Path) -> None:
    src = tmp_path / "raw"
    src.mkdir()
    for i in range(6):
        draw_sample("square", i).save(src / f"s{i}.png")
        (src / f"s{i}.txt").write_text("red\nsquare" if i % 2 else "square")
    result = prepare(src, tmp_path / "out", val=0.34)
    assert result.layout == "labels"
    labels_csv = (tmp_path / "out" / "train" / "labels.csv").read_text().splitlines()
    assert labels_csv[0] == "path,labels" and all(r.startswith("images/") for r in labels_csv[1:])
    assert {"red;square", "square"} == set(result.counts)


def test_csv_layout_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "set"
    make_class_folders(root / "imgs", ("circle", "square"), per_class=5)
    rows = [f"imgs/{c}/{c}_{i:03d}.png,{c}" for c in ("circle", "square") for i in range(5)]
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\nimgs/gone.png,circle\n")
    before = tree_digest(root)
    result = prepare(root / "labels.csv", tmp_path / "out")
    assert result.layout == "csv" and result.totals["written"] == 10 and result.totals["rejected"] == 1
    assert tree_digest(root) == before


def test_parallel_decoding_matches_serial(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "raw", ("circle", "square"), per_class=110, size=8)
    prepare(src, tmp_path / "par", workers=2)
    prepare(src, tmp_path / "ser", workers=1)
    assert tree_digest(tmp_path / "par") == tree_digest(tmp_path / "ser")


def test_cli_prints_table_and_exits_zero(class_folders: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", str(class_folders), str(tmp_path / "out"), "--seed", "7"]) == 0
    out, err = capsys.readouterr()
    assert "circle" in out and "total" in out and "detected" in err
    assert main(["prepare", str(tmp_path / "missing"), str(tmp_path / "o2")]) == 1
