"""Enhancement look-up tables against their formulas; batch application; --set parsing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgclf.analysis.enhance import apply_enhancement, luma, map_planes, pick_figures, transfer_curves
from imgclf.analysis.enhancements import ENHANCEMENTS, curve_lut
from imgclf.config.enhancements import parse_settings, parse_variant, plan_variants
from imgclf.errors import UsageError

X = np.arange(256, dtype=np.float64)


def expected(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name, params, formula", [
    ("linear", {"a": 1.5, "b": -64.0}, lambda x: 1.5 * x - 64),
    ("linear", {"a": 0.5, "b": 100.0}, lambda x: 0.5 * x + 100),
    ("log", {}, lambda x: 255 / np.log(256) * np.log(1 + x)),
    ("log", {"c": 30.0}, lambda x: 30 * np.log(1 + x)),
    ("exponential", {}, lambda x: 2.0 ** (8 / 255 * x) - 1),
    ("exponential", {"b": 3.0, "c": 0.02, "a": 10.0}, lambda x: 3.0 ** (0.02 * (x - 10)) - 1),
    ("gamma", {"g": 0.5}, lambda x: 255 * (x / 255) ** 0.5),
    ("gamma", {"g": 2.2, "eps": 0.01}, lambda x: 255 * (x / 255 + 0.01) ** 2.2),
])
def test_curve_luts_follow_their_formula(name: str, params: dict, formula) -> None:
    lut = curve_lut(name, params)
    assert lut.dtype == np.uint8 and lut.shape == (256,)
    np.testing.assert_array_equal(lut, expected(formula(X)))


def test_default_curves_map_the_full_range_onto_itself() -> None:
    for name in ("log", "exponential", "gamma"):
        lut = curve_lut(name)
        assert (lut[0], lut[255]) == (0, 255), name
        assert np.all(np.diff(lut.astype(int)) >= 0), name


def low_contrast_image(size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(100, 140, size=(1, 1, size, size), dtype=np.uint8)


def test_histeq_flattens_the_histogram_of_a_low_contrast_image() -> None:
    image = low_contrast_image()
    out = apply_enhancement(image, "histeq")
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert out.min() == 0 and out.max() == 255
    # equalized: the cumulative histogram follows the diagonal
    cdf = np.cumsum(np.bincount(out.ravel(), minlength=256)) / out.size
    assert np.abs(cdf[out.ravel()] - out.ravel() / 255.0).max() < 0.05
    assert out.std() > 5 * image.std()


def test_histeq_lut_is_the_normalised_cumulative_histogram() -> None:
    image = low_contrast_image(16)
    hist = np.bincount(image.ravel(), minlength=256)
    cdf = np.cumsum(hist)
    cdf_min = cdf[hist > 0][0]
    direct = expected((cdf - cdf_min) / (cdf[-1] - cdf_min) * 255)
    curve = transfer_curves(image[:, 0], "histeq")[0]
    np.testing.assert_array_equal(curve[100:140], direct[100:140])
    linear_after = transfer_curves(image[:, 0], "histeq_linear", {"a": 0.8, "b": 26})[0]
    np.testing.assert_array_equal(linear_after, expected(0.8 * direct.astype(float) + 26))


def test_image_dependent_curves_are_computed_per_image() -> None:
    dark = np.full((1, 1, 8, 8), 10, np.uint8)
    dark[..., :4] = 20
    bright = dark + 200
    out = apply_enhancement(np.concatenate([dark, bright]), "histeq")
    np.testing.assert_array_equal(out[0], out[1])  # both become 0/255 halves
    assert set(np.unique(out[0])) == {0, 255}


def test_autocontrast_stretches_percentiles() -> None:
    image = np.tile(np.arange(50, 150, dtype=np.uint8), (1, 1, 100, 1))
    out = apply_enhancement(image, "autocontrast", {"low": 0, "high": 100})
    assert out.min() == 0 and out.max() == 255
    np.testing.assert_array_equal(out[0, 0, 0], expected((np.arange(50, 150) - 50) * 255 / 99))


def test_clahe_raises_local_contrast_and_keeps_range() -> None:
    image = low_contrast_image(64)
    out = apply_enhancement(image, "clahe", {"tiles": 4, "clip": 2.0})
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert out.std() > 2 * image.std()
    flat = np.full((1, 1, 32, 32), 77, np.uint8)
    assert np.ptp(apply_enhancement(flat, "clahe")) == 0  # a flat image stays flat


@pytest.mark.parametrize("name", sorted(ENHANCEMENTS))
def test_every_enhancement_is_uint8_in_uint8_out_for_numpy_and_torch(name: str) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(3, 3, 20, 24), dtype=np.uint8)
    for images in (rgb, torch.from_numpy(rgb), rgb[:, :1]):
        for color in ("luma", "channels"):
            out = apply_enhancement(images, name, color=color)
            assert type(out) is type(images) and out.dtype == images.dtype and tuple(out.shape) == tuple(images.shape)
    curves = transfer_curves(luma(rgb), name)
    assert curves.dtype == np.uint8 and curves.shape == (3, 256)


def test_grey_images_go_straight_through_the_lut() -> None:
    grey = np.random.default_rng(2).integers(0, 256, size=(4, 1, 9, 9), dtype=np.uint8)
    np.testing.assert_array_equal(apply_enhancement(grey, "gamma", {"g": 0.5}), curve_lut("gamma", {"g": 0.5})[grey])


def test_luma_mode_maps_luminance_and_keeps_hue() -> None:
    rng = np.random.default_rng(3)
    rgb = rng.integers(20, 120, size=(2, 3, 16, 16), dtype=np.uint8)
    out = apply_enhancement(rgb, "gamma", {"g": 0.5}, color="luma")
    y = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    y_out = 0.299 * out[:, 0] + 0.587 * out[:, 1] + 0.114 * out[:, 2]
    target = curve_lut("gamma", {"g": 0.5})[np.rint(y).astype(np.uint8)]
    unclipped = (out < 255).all(axis=1)
    assert unclipped.mean() > 0.8
    assert np.abs(y_out - target)[unclipped].max() < 1.5  # luminance follows the curve
    ratios_in = rgb[:, 0].astype(float) / rgb[:, 1]
    ratios_out = out[:, 0].astype(float) / out[:, 1]
    assert np.abs(ratios_out - ratios_in)[unclipped].max() < 0.1  # channel ratios (hue, saturation) kept


def test_channels_mode_maps_each_channel() -> None:
    rgb = np.random.default_rng(4).integers(0, 256, size=(2, 3, 8, 8), dtype=np.uint8)
    out = apply_enhancement(rgb, "linear", {"a": 2.0, "b": 0.0}, color="channels")
    np.testing.assert_array_equal(out, expected(2.0 * rgb))


def test_identity_settings_leave_colour_images_unchanged() -> None:
    rgb = np.random.default_rng(5).integers(0, 256, size=(2, 3, 8, 8), dtype=np.uint8)
    np.testing.assert_array_equal(apply_enhancement(rgb, "linear", {"a": 1.0, "b": 0.0}), rgb)


def test_black_pixels_are_brightened_in_luma_mode() -> None:
    black = np.zeros((1, 3, 4, 4), np.uint8)
    out = apply_enhancement(black, "linear", {"a": 1.0, "b": 50.0})
    assert (out == 50).all()


def test_map_planes_rejects_nothing_and_bad_batches_are_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        apply_enhancement(np.zeros((1, 3, 4, 4), np.float32), "gamma")
    assert map_planes(np.zeros((2, 4, 4), np.uint8), "log").dtype == np.uint8


def test_parse_settings_expands_sweeps() -> None:
    variants = parse_settings(["gamma.g=0.4,0.7", "linear.a=1.5"])
    assert [(v.name, v.params) for v in variants] == [
        ("gamma", {"g": 0.4, "eps": 0.0}), ("gamma", {"g": 0.7, "eps": 0.0}), ("linear", {"a": 1.5, "b": -64.0})]
    grid = parse_settings(["gamma.g=0.4,0.7", "gamma.eps=0,0.1"])
    assert len(grid) == 4


@pytest.mark.parametrize("setting, words", [
    ("gama.g=1", ["--set", "unknown enhancement", "gamma", "histeq"]),
    ("gamma.x=1", ["--set", "gamma.g", "gamma.eps"]),
    ("gamma.g=abc", ["--set", "not a number"]),
    ("gamma=1", ["--set", "NAME.PARAM"]),
    ("clahe.tiles=0", ["--set", "outside"]),
])
def test_bad_settings_name_the_flag_and_what_is_allowed(setting: str, words: list[str]) -> None:
    with pytest.raises(UsageError) as info:
        parse_settings([setting])
    assert all(word in str(info.value) for word in words)


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(UsageError) as info:
        parse_settings(["gama.g=1", "gamma.x=1"])
    assert len(str(info.value).splitlines()) == 2


def test_plan_variants_defaults_and_sweeps() -> None:
    plan = plan_variants(["gamma", "histeq"], ["gamma.g=0.5,2"])
    assert [v.label for v in plan] == ["gamma:g=0.5,eps=0", "gamma:g=2,eps=0", "histeq"]
    assert len(plan_variants([])) == len(ENHANCEMENTS)
    with pytest.raises(UsageError, match="not among"):
        plan_variants(["histeq"], ["gamma.g=0.5"])


def test_parse_variant_reads_the_label_format() -> None:
    variant = parse_variant("gamma:g=0.5,eps=0.01")
    assert variant.params == {"g": 0.5, "eps": 0.01}
    assert parse_variant(variant.label) == variant
    with pytest.raises(UsageError, match="--preprocess"):
        parse_variant("sharpen")


def test_figures_show_rescued_then_broken_then_the_worst_mistakes() -> None:
    # 6 labelled images, 2 classes; version 0 is the original, 1 and 2 are enhancements
    p = lambda a: [a, 1 - a]   # noqa: E731  probabilities of class 0 and 1
    all_probs = np.array([
        # img0 right  img1 wrong   img2 wrong  img3 right  img4 wrong  img5 right
        [p(0.9),      p(0.4),      p(0.3),     p(0.6),     p(0.1),     p(0.95)],   # original
        [p(0.9),      p(0.6),      p(0.8),     p(0.45),    p(0.2),     p(0.95)],   # 1 rescues img1, img2; breaks img3
        [p(0.9),      p(0.4),      p(0.3),     p(0.3),     p(0.1),     p(0.9)],    # 2 breaks img3 further
    ])
    targets = np.zeros(6, dtype=np.int64)
    picks = pick_figures(targets, all_probs, 10)
    assert [(f.index, f.reason) for f in picks] == [
        (2, "rescued"), (1, "rescued"),        # the larger gain of p_true first (+0.5, then +0.2)
        (3, "broken"), (4, "mistake"),         # then the worst mistake (p_true 0.1)
        (0, "correct"), (5, "correct")]        # least sure first
    assert [f.index for f in pick_figures(targets, all_probs, 3)] == [2, 1, 3]


def test_figures_of_unlabelled_images_show_changed_predictions_first() -> None:
    all_probs = np.array([[[0.9, 0.1], [0.6, 0.4]], [[0.9, 0.1], [0.4, 0.6]]])
    picks = pick_figures(np.array([-1, -1]), all_probs, 5)
    assert [(f.index, f.reason) for f in picks] == [(1, "changed"), (0, "other")]
