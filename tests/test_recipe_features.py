"""EMA of the weights, progressive resizing, BatchNorm refresh, the precision and compile probes, and lr-find."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from test_reliability_resume import rows, tensors_equal, train_with_snapshots

import imgclf
from imgclf.artifacts import RunDir
from imgclf.cli import main
from imgclf.engine.checkpoint import load_state, load_weights
from imgclf.engine import compilation
from imgclf.engine.compilation import decide_compile
from imgclf.engine.precision import CACHE, probe_key, probe_precision
from imgclf.machine import read_verdicts, remember_verdict
from imgclf.training.batchnorm import refresh_batch_norm
from imgclf.training.ema import WeightAverage

FEATURES = dict(model="fastnet_s", batch_size=8, img_size=32, deterministic=True, precision="fp32", device="cpu",
                epochs=3, seed=5, ema=0.9, progressive=0.5, bn_refresh=16, save_every=1, eval_every=1)
STOPS = {"mid-epoch": 4, "epoch-boundary": 6}    # 48 images / 8 = 6 steps per epoch; epoch 2 changes size


@pytest.fixture(scope="module")
def feature_runs(split_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """An uninterrupted run with every new option on, and copies of it right after the saves at STOPS."""
    return train_with_snapshots(split_data, tmp_path_factory.mktemp("features"), FEATURES, STOPS)


@pytest.mark.parametrize("where", sorted(STOPS))
def test_resume_is_exact_with_ema_progressive_resizing_and_bn_refresh(feature_runs: tuple[Path, dict[str, Path]],
                                                                      where: str) -> None:
    full, copies = feature_runs
    imgclf.train(resume=copies[where])
    a, b = load_state(RunDir(full).resume_state), load_state(RunDir(copies[where]).resume_state)
    assert tensors_equal(a["model"], b["model"]) and tensors_equal(a["ema"], b["ema"])
    assert tensors_equal(a["optimizer"], b["optimizer"])
    assert rows(full) == rows(copies[where])


def test_the_saved_weights_are_the_average(feature_runs: tuple[Path, dict[str, Path]]) -> None:
    full, _ = feature_runs
    state = load_state(RunDir(full).resume_state)
    saved, _ = load_weights(RunDir(full).weights("last"))
    assert tensors_equal({k: v for k, v in saved.items()}, dict(state["ema"]))
    assert not tensors_equal(dict(state["ema"]), dict(state["model"]))


def test_weight_average_follows_the_live_weights() -> None:
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average.update(model, step=100)            # decay min(0.5, 101/110) = 0.5
    assert torch.allclose(average.model.weight, torch.full((1, 2), 0.5))
    average.update(model, step=0)              # warmed-up decay 1/10: mostly the live weights
    assert torch.allclose(average.model.weight, torch.full((1, 2), 0.5 * 0.1 + 0.9))


def test_bn_refresh_measures_the_statistics_of_its_inputs() -> None:
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(3)
    norm.running_mean.fill_(5.0)            # stale statistics, far off
    batches = [torch.randn(16, 3, 4, 4) * 2 + 1 for _ in range(4)]
    seen = refresh_batch_norm(norm.eval(), batches)
    assert seen == 64 and not norm.training and norm.momentum == 0.1
    per_batch_means = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    assert torch.allclose(norm.running_mean, per_batch_means, atol=1e-5)
    assert refresh_batch_norm(nn.Linear(2, 2), batches) == 0     # no BatchNorm: nothing to do


def test_precision_probe_measures_once_then_reads_the_cache(machine_cache: Path) -> None:
    made = []

    def make() -> nn.Module:
        made.append(1)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    first = probe_precision(make, "probe-test-net", 3, 16, 4)
    assert first.precision in ("fp32", "bf16") and not first.cached and first.fp32_step_s > 0
    assert probe_key("probe-test-net", 3, 16, 4) in read_verdicts(CACHE)
    built = len(made)
    second = probe_precision(make, "probe-test-net", 3, 16, 4)
    assert second.cached and second.precision == first.precision and len(made) == built


def test_a_cached_verdict_decides_without_measuring() -> None:
    key = probe_key("probe-cached-net", 3, 8, 2)
    remember_verdict(CACHE, key, {"precision": "bf16", "fp32_step_s": 0.2, "bf16_step_s": 0.1})
    verdict = probe_precision(lambda: pytest.fail("measured despite the cache"), "probe-cached-net", 3, 8, 2)
    assert verdict.precision == "bf16" and verdict.cached and "0.50x" in verdict.reason()


def _tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(4, 3, 16, 16).contiguous(memory_format=torch.channels_last), torch.tensor([0, 1, 2, 0])


def test_compile_auto_decides_from_the_cached_measurement_and_the_run_length() -> None:
    remember_verdict(compilation.CACHE, "compile-cached", {"compile_s": 30.0, "eager_step_s": 0.2,
                                                           "compiled_step_s": 0.1})
    never = lambda: pytest.fail("measured despite the cache")   # noqa: E731
    short = decide_compile(never, "compile-cached", *_batch(), None, steps=100)    # saves 10 s, costs 30 s
    long = decide_compile(never, "compile-cached", *_batch(), None, steps=1000)    # saves 100 s
    assert not short.compile and "would not pay back within 100 steps" in short.reason
    assert long.compile and "saves about 70 s" in long.reason and "measured earlier" in long.reason


def test_compile_auto_does_not_probe_for_a_short_run_and_times_its_steps_once() -> None:
    decision = decide_compile(_tiny_net, "compile-short", *_batch(), None, steps=20)
    assert not decision.compile and "too few to pay back" in decision.reason
    saved = read_verdicts(compilation.CACHE)["compile-short"]
    assert saved.keys() == {"eager_step_s"} and saved["eager_step_s"] > 0   # no compile measured

    def not_again() -> torch.nn.Module:
        raise AssertionError("the eager step time was stored; nothing is measured again")

    again = decide_compile(not_again, "compile-short", *_batch(), None, steps=20)
    assert not again.compile and "too few to pay back" in again.reason


@pytest.mark.slow
def test_compile_auto_measures_a_long_run_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compilation, "PROBE_MIN_RUN_S", 0.0)
    first = decide_compile(_tiny_net, "compile-measured", *_batch(), None, steps=10**6)
    saved = read_verdicts(compilation.CACHE)["compile-measured"]
    assert saved["compile_s"] > 0 and saved["eager_step_s"] > 0 and saved["compiled_step_s"] > 0
    assert "measured now" in first.reason
    assert "measured earlier" in decide_compile(_tiny_net, "compile-measured", *_batch(), None, steps=1).reason


def test_the_probes_leave_the_random_numbers_alone(split_data: Path) -> None:
    """Measured or read from the cache, on rank 0 only: the run's random numbers are the same."""
    from imgclf.commands.train.setup import load_data, resolve_recipe
    from imgclf.config import TrainConfig, build_config
    from imgclf.engine.distributed import Dist

    cfg = build_config(TrainConfig, {"data": str(split_data), "img_size": 32, "device": "cpu"})
    data = load_data(cfg, False, pin=False, preprocess=None)
    for _ in range(2):     # the first run measures the precision, the second reads the verdict
        torch.manual_seed(0)
        before = torch.random.get_rng_state()
        recipe, _ = resolve_recipe(cfg, data, len(data.classes), Dist())
        assert torch.equal(torch.random.get_rng_state(), before)
    assert any(note.startswith("precision fp32") or note.startswith("precision bf16") for note in recipe.notes)
    assert any(note.startswith("compile off") for note in recipe.notes) and not recipe.compile


def test_lr_find_plots_and_suggests(split_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "lr.png"
    args = ["lr-find", str(split_data), "--model", "small_cnn", "--batch-size", "16", "--num-steps", "30",
            "--precision", "fp32", "--out", str(plot)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "suggested lr" in out and "imgclf train" in out and "--lr" in out
    assert main(args) == 1                                   # the plot is not overwritten without --force
    assert "--force" in capsys.readouterr().err


def test_train_lr_find_uses_the_range_test(split_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "found"
    imgclf.train(split_data, out=run, model="small_cnn", lr="find", epochs=1, batch_size=16, precision="fp32")
    chosen = json.loads(RunDir(run).config_json.read_text())["derived"]["recipe"]
    assert 1e-5 <= chosen["lr"] <= 10 and any("range test" in note for note in chosen["notes"])
