"""Near-duplicates: perceptual hash, pair search, groups, and prepare keeping groups in one split."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from conftest import tree_digest
from imgclf.cli import main
from imgclf.data.neardup import (component_labels, hash_distance, near_duplicate_groups, near_pairs,
                                 perceptual_hash, popcount, popcount_bytes)


def brute_force_pairs(hashes: np.ndarray, radius: int) -> np.ndarray:
    distance = popcount(hashes[:, None] ^ hashes[None, :])
    i, j = np.triu_indices(len(hashes), 1)
    keep = distance[i, j] <= radius
    return np.stack([i[keep], j[keep]], axis=1)


@pytest.mark.parametrize("concentrated", [False, True])
def test_band_search_finds_exactly_the_pairs_within_the_radius(concentrated: bool) -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 1500, dtype=np.int64).astype(np.uint64) << np.uint64(1)
    if concentrated:   # few distinct band values: large buckets take the one-by-one path
        hashes &= np.uint64(0x00FF00FF00FF00FF)
    flips = [np.uint64(1) << rng.integers(0, 64, 750).astype(np.uint64) for _ in range(3)]
    hashes[1::2] = hashes[0::2] ^ flips[0] ^ flips[1] ^ flips[2]   # planted pairs 1 to 3 bits apart
    for radius in (0, 2, 4, 8):
        np.testing.assert_array_equal(near_pairs(hashes, radius), brute_force_pairs(hashes, radius))


def test_popcount_without_numpy_2() -> None:
    values = np.array([0, 1, 2**64 - 1, 0xF0F0, 12345678901234567], dtype=np.uint64)
    assert popcount_bytes(values).tolist() == [0, 1, 64, 8, bin(12345678901234567).count("1")]


def test_groups_follow_chains_and_equal_hashes() -> None:
    hashes = [f"{v:016x}" for v in (0b0, 0b11, 0b1111, 0xFF00, 0xFF00, 0xFFFF_0000_0000)]
    # 0 - 3 - 15 chain at 2 bits each; the two 0xFF00 are equal; the last is alone
    assert near_duplicate_groups(hashes, 2) == [[0, 1, 2], [3, 4]]
    assert component_labels(4, np.array([[2, 3], [0, 3]])).tolist() == [0, 1, 0, 0]
    assert hash_distance(hashes[0], hashes[2]) == 4


# --- real images with planted near-copies ------------------------------------------------

def photo_originals() -> list[Image.Image]:
    """skimage's bundled photographs at 192 px, whole and as 96 px tiles with some detail (not plain sky)."""
    import skimage.data as data

    names = ("astronaut", "camera", "chelsea", "coffee", "coins", "clock", "hubble_deep_field",
             "immunohistochemistry", "moon", "page", "retina", "rocket", "text", "brick", "grass", "gravel")
    photos = [Image.fromarray(getattr(data, name)()) for name in names]
    photos = [p.resize((192, round(192 * p.height / p.width)), Image.Resampling.LANCZOS) for p in photos]
    tiles = [p.crop((x, y, x + 96, y + 96)) for p in photos for y in (0, 96) for x in (0, 96) if y + 96 <= p.height]
    return photos + [t for t in tiles if np.asarray(t).std() >= 8]


def digit_originals(count: int) -> list[Image.Image]:
    """scikit-learn's bundled handwritten digits (8 x 8 scans), shown at 32 x 32."""
    from sklearn.datasets import load_digits

    images = load_digits().images[:count]
    return [Image.fromarray((x * 255 / 16).astype(np.uint8)).resize((32, 32), Image.Resampling.BILINEAR)
            for x in images]


def near_copy(img: Image.Image, rng: np.random.Generator) -> bytes:
    """Resized 0.5-2x, brightness +-10%, JPEG quality 60-95."""
    factor = rng.uniform(0.5, 2.0)
    img = img.resize((max(8, round(img.width * factor)), max(8, round(img.height * factor))),
                     Image.Resampling.BICUBIC)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.9, 1.1))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(60, 96)))
    return buf.getvalue()


def plant(root: Path, originals: dict[str, list[Image.Image]], copies: int, seed: int = 0) -> list[tuple[str, str]]:
    """root/<class>/oNNN.png originals, and near-copies of the first ``copies`` of each as cNNN.jpg."""
    rng = np.random.default_rng(seed)
    pairs = []
    for cls, images in originals.items():
        (root / cls).mkdir(parents=True)
        for n, img in enumerate(images):
            img.save(root / cls / f"o{n:03d}.png", compress_level=1)
            if n < copies:
                (root / cls / f"c{n:03d}.jpg").write_bytes(near_copy(img, rng))
                pairs.append((f"{cls}/o{n:03d}.png", f"{cls}/c{n:03d}.jpg"))
    return pairs


def read_report(dst: Path) -> tuple[dict, dict[str, str]]:
    report = json.loads((dst / "prepare_report.json").read_text())
    with open(dst / "manifest.csv", newline="") as f:
        split_of = {row["source"]: row["split"] for row in csv.DictReader(f)}
    return report, split_of


def found_share(report: dict, pairs: list[tuple[str, str]]) -> float:
    group_of = {image["path"]: n for n, g in enumerate(report["near_duplicates"]) for image in g["images"]}
    return float(np.mean([a in group_of and group_of.get(a) == group_of.get(b) for a, b in pairs]))


def test_prepare_finds_near_copies_and_keeps_each_group_in_one_split(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "raw"
    pairs = plant(src, {"photo": photo_originals()[:40], "digit": digit_originals(60)}, copies=30)
    before = tree_digest(src)
    assert main(["prepare", str(src), str(tmp_path / "dst"), "--val", "0.3", "--test", "0.2"]) == 0
    err = capsys.readouterr().err
    report, split_of = read_report(tmp_path / "dst")
    assert found_share(report, pairs) >= 0.9
    for group in report["near_duplicates"]:
        splits = {split_of[image["path"]] for image in group["images"]}
        assert len(splits) == 1 and group["splits"] == sorted(splits)
    assert report["totals"]["near_duplicate_groups_across_splits"] == 0
    assert f"{report['totals']['near_duplicate_groups']} group(s)" in err and "within one split" in err
    assert tree_digest(src) == before
    first = tree_digest(tmp_path / "dst")
    assert main(["prepare", str(src), str(tmp_path / "dst"), "--val", "0.3", "--test", "0.2"]) == 0
    assert tree_digest(tmp_path / "dst") == first


def test_report_only_lists_groups_that_straddle_splits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "raw"
    pairs = plant(src, {"a": digit_originals(40)[:20], "b": digit_originals(40)[20:]}, copies=20, seed=1)
    assert main(["prepare", str(src), str(tmp_path / "dst"), "--val", "0.5", "--near-duplicates", "report"]) == 0
    report, split_of = read_report(tmp_path / "dst")
    assert found_share(report, pairs) >= 0.9
    across = [g for g in report["near_duplicates"] if len({split_of[i["path"]] for i in g["images"]}) > 1]
    assert across and report["totals"]["near_duplicate_groups_across_splits"] == len(across)
    assert "span several splits" in capsys.readouterr().err
    assert main(["prepare", str(src), str(tmp_path / "off"), "--near-duplicates", "off"]) == 0
    assert read_report(tmp_path / "off")[0]["near_duplicates"] == []


def test_near_copies_in_different_classes_stay_together(tmp_path: Path) -> None:
    src = tmp_path / "raw"
    originals = digit_originals(30)
    plant(src, {"a": originals[:15], "b": originals[15:]}, copies=0)
    rng = np.random.default_rng(2)
    (src / "b" / "copy_of_a000.jpg").write_bytes(near_copy(originals[0], rng))
    assert main(["prepare", str(src), str(tmp_path / "dst"), "--val", "0.4"]) == 0
    report, split_of = read_report(tmp_path / "dst")
    group = next(g for g in report["near_duplicates"] if "a/o000.png" in [i["path"] for i in g["images"]])
    assert "b/copy_of_a000.jpg" in [i["path"] for i in group["images"]]
    assert {i["class"] for i in group["images"]} == {"a", "b"} and len(group["splits"]) == 1


def test_hash_is_stable_across_modes() -> None:
    grey = Image.fromarray((np.add.outer(np.arange(64), np.arange(64)) * 2).astype(np.uint8))
    deep = Image.fromarray((np.asarray(grey, dtype=np.uint16) * 257))
    assert deep.mode.startswith("I")
    assert hash_distance(perceptual_hash(grey), perceptual_hash(grey.convert("RGB"))) == 0
    assert hash_distance(perceptual_hash(grey), perceptual_hash(deep)) <= 2


@pytest.mark.slow
def test_near_copies_found_at_scale(tmp_path: Path) -> None:
    """Every photograph and tile, and 1000 digits, each with a near-copy; prints the figures (-s)."""
    src = tmp_path / "raw"
    photos, digits = photo_originals(), digit_originals(1000)
    pairs = plant(src, {"photo": photos, "digit": digits}, copies=len(digits))
    assert main(["prepare", str(src), str(tmp_path / "dst"), "--val", "0.2", "--test", "0.1"]) == 0
    report, split_of = read_report(tmp_path / "dst")
    share = found_share(report, pairs)
    originals = [sum(Path(i["path"]).name.startswith("o") for i in g["images"]) for g in report["near_duplicates"]]
    print(f"\nnear-copies found: {share:.4f} of {len(pairs)}; groups {len(originals)}, of which "
          f"{sum(n > 1 for n in originals)} join distinct originals (largest group "
          f"{max(len(g['images']) for g in report['near_duplicates'])} images)")
    assert share >= 0.9
    assert all(len({split_of[i["path"]] for i in g["images"]}) == 1 for g in report["near_duplicates"])
