"""Layouts, hidden entries, symlinks, dedup and the stratified, seeded split."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest
from conftest import draw_sample, make_class_folders

from imgclf.data.discover import detect_layout, discover, parse_labels
from imgclf.data.split import Item, deduplicate, split_counts, split_samples
from imgclf.errors import ImgclfError


def names(found) -> dict[str, tuple[str, ...]]:
    return {s.source.name: s.labels for s in found.samples}


def test_class_folders_skip_hidden_and_reject_non_images(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "raw", ("circle", "square"), per_class=2)
    (src / "circle" / "nested").mkdir()
    draw_sample("circle", 7).save(src / "circle" / "nested" / "deep.png")
    (src / ".hidden_class").mkdir()
    draw_sample("cross", 0).save(src / ".hidden_class" / "x.png")
    (src / "circle" / ".ipynb_checkpoints").mkdir()
    draw_sample("circle", 8).save(src / "circle" / ".ipynb_checkpoints" / "c.png")
    (src / "__MACOSX").mkdir()
    (src / ".DS_Store").write_bytes(b"\0\0")
    (src / "circle" / "notes.txt").write_text("hello")
    draw_sample("circle", 9).save(src / "loose.png")
    found = discover(src, "folders")
    assert found.classes == ["circle", "square"]
    assert len(found.samples) == 5 and names(found)["deep.png"] == ("circle",)
    rejected = {p.name: r for p, r in found.rejected}
    assert set(rejected) == {"notes.txt", "loose.png"}
    assert "not an image" in rejected["notes.txt"] and "class folder" in rejected["loose.png"]
    ignored = {p.name for p, _ in found.ignored}
    assert {".hidden_class", ".ipynb_checkpoints", "__MACOSX", ".DS_Store"} <= ignored


def test_symlink_loops_and_links_out_of_src_are_not_followed(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "raw", ("circle",), per_class=2)
    outside = make_class_folders(tmp_path / "elsewhere", ("square",), per_class=2)
    os.symlink(src, src / "circle" / "loop")
    os.symlink(outside / "square", src / "square")
    os.symlink(outside / "square" / "square_000.png", src / "circle" / "outside.png")
    os.symlink(src / "circle" / "circle_000.png", src / "circle" / "inside.png")
    os.symlink(tmp_path / "missing.png", src / "circle" / "broken.png")
    found = discover(src, "folders")
    assert found.classes == ["circle"]
    assert sorted(names(found)) == ["circle_000.png", "circle_001.png", "inside.png"]
    rejected = {p.name: r for p, r in found.rejected}
    assert "outside SRC" in rejected["outside.png"] and "broken" in rejected["broken.png"]
    assert {"loop", "square"} <= {p.name for p, _ in found.ignored}


def test_label_files_single_and_multi_label(tmp_path: Path) -> None:
    src = tmp_path / "raw"
    src.mkdir()
    for i, text in enumerate(["cat\n", "dog", "cat, dog", "dog\ncat\n", "  "]):
        draw_sample("circle", i).save(src / f"img{i}.png")
        (src / f"img{i}.txt").write_text(text)
    draw_sample("circle", 9).save(src / "unlabelled.png")
    (src / "orphan.txt").write_text("cat")
    assert detect_layout(src) == "labels"
    found = discover(src, "labels")
    assert names(found) == {"img0.png": ("cat",), "img1.png": ("dog",), "img2.png": ("cat", "dog"),
                            "img3.png": ("cat", "dog")}
    assert found.multi_label
    rejected = {p.name: r for p, r in found.rejected}
    assert "empty" in rejected["img4.png"] and "no label file" in rejected["unlabelled.png"]
    assert "without a same-named image" in rejected["orphan.txt"]


def test_parse_labels_separators() -> None:
    assert parse_labels("b; a,c\nd e\n") == ("a", "b", "c", "d", "e")


def test_csv_layout_paths_relative_to_the_csv(tmp_path: Path) -> None:
    root = tmp_path / "set"
    (root / "imgs").mkdir(parents=True)
    for i in range(3):
        draw_sample("square", i).save(root / "imgs" / f"{i}.png")
    (root / "labels.csv").write_text("path,label\nimgs/0.png,a\nimgs/1.png,b\nimgs/1.png,c\n"
                                     "imgs/missing.png,a\nimgs/2.png\nimgs/2.png,.bad\n")
    assert detect_layout(root / "labels.csv") == "csv" and detect_layout(root) == "csv"
    found = discover(root, "csv")
    assert names(found) == {"0.png": ("a",), "1.png": ("b", "c")}
    reasons = " | ".join(r for _, r in found.rejected)
    assert "not found" in reasons and "expected path,label" in reasons and "starts with '.'" in reasons


def test_detect_layout_folders_and_unknown(tmp_path: Path) -> None:
    assert detect_layout(make_class_folders(tmp_path / "raw", per_class=1)) == "folders"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImgclfError, match="--layout"):
        detect_layout(tmp_path / "empty")
    with pytest.raises(ImgclfError, match="no such"):
        detect_layout(tmp_path / "nope")


def test_dedup_keeps_first_and_drops_conflicts() -> None:
    items = [Item("b/2", "h1", ("b",)), Item("a/1", "h1", ("b",)), Item("a/x", "h2", ("a",)),
             Item("b/x", "h2", ("b",)), Item("c/y", "h3", ("c",))]
    out = deduplicate(items)
    assert [i.key for i in out.kept] == ["a/1", "c/y"]
    assert out.duplicates == [("b/2", "a/1")]
    assert sorted(k for k, _ in out.conflicts) == ["a/x", "b/x"]
    assert all("label conflict" in r for _, r in out.conflicts)


@pytest.mark.parametrize("n", [2, 3, 5, 7, 10, 11, 23, 100])
@pytest.mark.parametrize("val,test", [(0.2, 0.0), (0.2, 0.1), (0.5, 0.0), (0.15, 0.15), (0.0, 0.3)])
def test_split_counts_within_one_image_of_target(n: int, val: float, test: float) -> None:
    n_train, n_val, n_test = split_counts(n, val, test)
    assert n_train + n_val + n_test == n and n_train >= 1
    assert abs(n_val - n * val) < 1 and abs(n_test - n * test) < 1 + (n < 3)
    if val > 0:
        assert n_val >= 1


def test_split_is_stratified_seeded_and_order_independent() -> None:
    groups = {cls: [f"{cls}/{i}" for i in range(n)] for cls, n in (("a", 50), ("b", 13), ("c", 4))}
    assignment, too_small = split_samples(groups, 0.2, 0.1, seed=3)
    assert too_small == []
    for cls, keys in groups.items():
        got = [assignment[k] for k in keys]
        assert abs(got.count("val") - len(keys) * 0.2) < 1 and abs(got.count("test") - len(keys) * 0.1) < 1
    shuffled = {cls: random.Random(9).sample(keys, len(keys)) for cls, keys in reversed(list(groups.items()))}
    assert split_samples(shuffled, 0.2, 0.1, seed=3)[0] == assignment
    assert split_samples(groups, 0.2, 0.1, seed=4)[0] != assignment
    without_a = {k: v for k, v in groups.items() if k != "a"}
    assert all(assignment[k] == s for k, s in split_samples(without_a, 0.2, 0.1, seed=3)[0].items())


def test_split_reports_classes_too_small() -> None:
    assignment, too_small = split_samples({"one": ["x"], "two": ["y", "z"]}, 0.2, 0.0, seed=0)
    assert too_small == ["one"] and assignment["x"] == "train"
    assert sorted(assignment[k] for k in ("y", "z")) == ["train", "val"]
    assert split_samples({"two": ["y", "z"]}, 0.2, 0.1, seed=0)[1] == ["two"]


def test_unreadable_folder_is_reported(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "raw", ("circle", "square"), per_class=1)
    locked = src / "square"
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        found = discover(src, "folders")
        assert any("cannot read" in r for _, r in found.rejected)
    finally:
        locked.chmod(0o755)
    shutil.rmtree(src)
