"""Calibration numbers against hand-computed values and scikit-learn; the temperature fit; the metadata rewrite."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from imgclf.analysis.calibration import (brier_score, calibration_summary, expected_calibration_error,
                                         fit_temperature, multilabel_calibration_summary, reliability_bins,
                                         temperature_nll)
from imgclf.engine.checkpoint import META_KEY, load_weights, read_temperature, save_weights, update_metadata
from imgclf.models.outputs import logits_to_probs


def two_class(confidences: list[float], correct: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Targets and (N, 2) probabilities whose top label is class 0 with the given confidence."""
    probs = np.array([[c, 1.0 - c] for c in confidences])
    targets = np.array([0 if ok else 1 for ok in correct])
    return targets, probs


def test_ece_by_hand_one_sample_per_bin() -> None:
    # confidences 0.9, 0.75, 0.62, 0.55 fall in bins 13, 11, 9 and 8 of 15: ECE = mean |correct - confidence|
    targets, probs = two_class([0.9, 0.75, 0.62, 0.55], [True, False, True, True])
    assert expected_calibration_error(targets, probs) == pytest.approx((0.1 + 0.75 + 0.38 + 0.45) / 4)


def test_ece_by_hand_shared_bin() -> None:
    # 0.9 (right) and 0.92 (wrong) share bin (13/15, 14/15]: accuracy 0.5, confidence 0.91 -> 2/3 * 0.41;
    # 0.6 (right) alone in bin (8/15, 9/15]: 1/3 * 0.4
    targets, probs = two_class([0.9, 0.92, 0.6], [True, False, True])
    assert expected_calibration_error(targets, probs) == pytest.approx(2 / 3 * 0.41 + 1 / 3 * 0.4)


def test_bins_are_left_open_right_closed() -> None:
    bins = reliability_bins(np.array([0.0, 1 / 15, 1 / 15 + 1e-9, 1.0]), np.array([1, 1, 0, 1]))
    assert bins.counts[0] == 2 and bins.counts[1] == 1 and bins.counts[14] == 1
    assert bins.counts.sum() == 4
    assert bins.accuracy[1] == 0.0 and bins.confidence[14] == 1.0


def reference_ece(targets: np.ndarray, probs: np.ndarray, num_bins: int = 15) -> float:
    """The loop of Guo et al.'s published code: bins (lower, upper], weight = share of samples."""
    confidences, preds = probs.max(1), probs.argmax(1)
    accuracies = preds == targets
    edges = np.linspace(0, 1, num_bins + 1)
    ece = 0.0
    for lower, upper in zip(edges[:-1], edges[1:]):
        in_bin = (confidences > lower) & (confidences <= upper)
        if in_bin.any():
            ece += in_bin.mean() * abs(accuracies[in_bin].mean() - confidences[in_bin].mean())
    return float(ece)


def test_ece_matches_the_reference_loop_on_random_probabilities() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 5)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    targets = rng.integers(0, 5, 500)
    assert expected_calibration_error(targets, probs) == pytest.approx(reference_ece(targets, probs), abs=1e-12)


def test_nll_and_brier_match_scikit_learn() -> None:
    from sklearn.metrics import brier_score_loss, log_loss

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(200, 4)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    targets = rng.integers(0, 4, 200)
    summary = calibration_summary(targets, probs)
    assert summary["nll"] == pytest.approx(log_loss(targets, probs, labels=[0, 1, 2, 3]), rel=1e-9)
    assert summary["brier"] == pytest.approx(brier_score_loss(targets, probs, labels=[0, 1, 2, 3],
                                                              scale_by_half=False), rel=1e-9)
    # two classes: the multi-class Brier score is twice scikit-learn's binary one
    binary = probs[:, :2] / probs[:, :2].sum(1, keepdims=True)
    labels = targets % 2
    assert brier_score(labels, binary) == pytest.approx(2 * brier_score_loss(labels, binary[:, 1]), rel=1e-9)


def test_brier_by_hand() -> None:
    # (0.7, 0.2, 0.1) with true class 0: 0.3^2 + 0.2^2 + 0.1^2 = 0.14; (0.5, 0.5, 0) with class 2: 0.25+0.25+1
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]])
    assert brier_score(np.array([0, 2]), probs) == pytest.approx((0.14 + 1.5) / 2)


def test_multilabel_summary_is_per_label_pairs() -> None:
    from sklearn.metrics import brier_score_loss, log_loss

    rng = np.random.default_rng(2)
    probs = rng.uniform(0.01, 0.99, size=(50, 3))
    targets = (rng.uniform(size=(50, 3)) < probs).astype(np.int64)
    summary = multilabel_calibration_summary(targets, probs)
    assert summary["brier"] == pytest.approx(brier_score_loss(targets.ravel(), probs.ravel()), rel=1e-9)
    assert summary["nll"] == pytest.approx(log_loss(targets.ravel(), probs.ravel()), rel=1e-9)
    assert sum(b["count"] for b in summary["bins"]) == 150


def test_empty_input_gives_zeros() -> None:
    summary = calibration_summary(np.zeros(0, dtype=np.int64), np.zeros((0, 3)))
    assert summary["ece"] == 0.0 and summary["brier"] == 0.0 and summary["nll"] == 0.0


@pytest.mark.parametrize("output", ["softmax", "sigmoid1", "multilabel"])
def test_fit_recovers_the_temperature_that_generated_the_labels(output: str) -> None:
    true_t = 2.5
    gen = torch.Generator().manual_seed(0)
    width = {"softmax": 4, "sigmoid1": 1, "multilabel": 3}[output]
    logits = torch.randn(4000, width, generator=gen) * 4
    probs = logits_to_probs(logits, output, true_t)
    if output == "softmax":
        targets = torch.multinomial(probs, 1, generator=gen).squeeze(1)
    elif output == "sigmoid1":
        targets = torch.bernoulli(probs[:, 1], generator=gen).long()
    else:
        targets = torch.bernoulli(probs, generator=gen)
    fit = fit_temperature(logits, targets, output)
    assert fit.temperature == pytest.approx(true_t, rel=0.12)
    grid = np.exp(np.linspace(math.log(0.5), math.log(10), 301))   # steps of 1% in T
    best = grid[np.argmin([temperature_nll(logits, targets, t, output) for t in grid])]
    assert fit.temperature == pytest.approx(best, rel=0.011)
    assert fit.nll_after <= fit.nll_before and not fit.at_bound


def test_fit_on_perfect_separable_logits_stops_at_the_bound() -> None:
    logits = torch.tensor([[5.0, -5.0], [-4.0, 4.0], [6.0, 0.0]])
    fit = fit_temperature(logits, torch.tensor([0, 1, 0]))
    assert fit.at_bound and fit.temperature == pytest.approx(0.05, rel=1e-3)


def test_logits_to_probs_divides_by_the_temperature() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    assert torch.allclose(logits_to_probs(logits, "softmax", 2.0), torch.softmax(logits / 2.0, dim=1))
    assert torch.allclose(logits_to_probs(torch.tensor([[1.5]]), "sigmoid1", 3.0),
                          torch.tensor([[1 - torch.sigmoid(torch.tensor(0.5)).item(),
                                         torch.sigmoid(torch.tensor(0.5)).item()]]))


def test_update_metadata_keeps_tensors_and_other_metadata(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = tmp_path / "best.safetensors"
    tensors = {"w": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64), "h": torch.randn(2).half()}
    meta = {"model": "small_cnn", "classes": ["a", "b"], "step": 7}
    save_file(tensors, str(path), metadata={META_KEY: json.dumps(meta), "other": "kept"})
    before = path.read_bytes()

    new = update_metadata(path, {"temperature": 1.7})
    assert new == {**meta, "temperature": 1.7}
    loaded, loaded_meta = load_weights(path)
    assert loaded_meta == {**meta, "temperature": 1.7} and read_temperature(loaded_meta) == 1.7
    for key, value in tensors.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["other"] == "kept"
    assert path.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors"]   # no temp file left

    update_metadata(path, {"temperature": None})
    assert load_weights(path)[1] == meta and read_temperature(meta) == 1.0
    assert len(path.read_bytes()) == len(before)


def test_a_bad_temperature_in_the_metadata_is_refused(tmp_path: Path) -> None:
    from imgclf.engine.inference import check_meta
    from imgclf.errors import CheckpointError

    meta = {"model": "small_cnn", "num_classes": 2, "in_channels": 1, "classes": ["a", "b"], "img_size": 16,
            "mean": [0.5], "std": [0.5]}
    check_meta({**meta, "temperature": 1.5}, tmp_path / "w")
    for bad in (0, -1.0, "2", float("inf"), True):
        with pytest.raises(CheckpointError, match="temperature"):
            check_meta({**meta, "temperature": bad}, tmp_path / "w")
    path = tmp_path / "w.safetensors"
    save_weights(path, {"x": torch.zeros(1)}, meta)
    assert read_temperature(load_weights(path)[1]) == 1.0
