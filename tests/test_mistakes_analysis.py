"""Ranking of mistakes, readable copy names, multi-label mistakes, figures."""

from __future__ import annotations

import numpy as np

from imgclf.analysis.mistakes import copy_name, margins, rank_mistakes
from imgclf.analysis.multilabel import multilabel_mistakes


def test_mistakes_are_ranked_by_loss() -> None:
    targets = np.array([0, 1, 0, 1, 0])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.45, 0.55]])
    np.testing.assert_array_equal(rank_mistakes(targets, probs), [2, 1, 4])
    np.testing.assert_allclose(margins(targets, probs), [0, 0.2, 0.6, 0, 0.1])


def test_copy_name_is_readable_and_safe() -> None:
    name = copy_name(3, "/data/val/real/img 01?.JPG", 0.1234, "fake", 0.8766)
    assert name == "0003_img_01__p0.123_to_fake_p0.877.jpg"
    long_name = copy_name(1, "/x/" + "é" * 300 + ".png", 0.5, "cat/dog", 0.5)
    assert len(long_name.encode("utf-8")) <= 200
    assert long_name.startswith("0001_é") and long_name.endswith("__p0.500_to_cat_dog_p0.500.png")
    assert "/" not in copy_name(2, "../../etc/passwd", 0.0, "..", 1.0)


def test_multilabel_mistakes_list_wrong_labels() -> None:
    targets = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    probs = np.array([[0.9, 0.1, 0.8], [0.7, 0.2, 0.1], [0.6, 0.4, 0.1]])
    wrong = multilabel_mistakes(targets, probs, ["a", "b", "c"])
    assert [(w.index, w.missed, w.extra) for w in wrong] == [(1, ["b"], ["a"]), (2, ["b"], [])]


def test_figures_are_written_atomically(tmp_path) -> None:
    from PIL import Image

    from imgclf.analysis.figures import EnhancementFigures, Panel, gallery, summary_chart

    images = np.random.default_rng(0).integers(0, 256, size=(5, 3, 16, 16), dtype=np.uint8)
    gallery(list(images), [f"a -> b ({i})" for i in range(5)], tmp_path / "g.png", max_items=4, cols=2)
    gallery([], [], tmp_path / "empty.png")
    panel = Panel(images[0], np.arange(256, dtype=np.uint8), "original")
    figures = EnhancementFigures(2)
    figures.draw(panel, [Panel(images[1], np.stack([np.arange(256)] * 3), "x")], tmp_path / "e.png")
    figures.close()
    summary_chart(["gamma", "histeq"], [2, 0], [1, 3], tmp_path / "s.png")
    for name in ("g.png", "empty.png", "e.png", "s.png"):
        with Image.open(tmp_path / name) as img:
            assert img.format == "PNG" and min(img.size) > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.png", "empty.png", "g.png", "s.png"]
