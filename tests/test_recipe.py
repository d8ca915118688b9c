"""The default recipe: what ``auto`` resolves to, the FastNet models, and the option types behind it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import imgclf
from imgclf.artifacts import RunDir
from imgclf.cli import main, make_config
from imgclf.engine.inference import fuse_for_inference
from imgclf.models.fastnet import FASTNETS
from imgclf.models.registry import create_model, list_models
from imgclf.training import recipe
from imgclf.training.schedules import ResolutionSchedule

from conftest import make_split_tree


@pytest.mark.parametrize(("img_size", "num_train", "expected"), [
    (32, 500, "fastnet_s"), (32, 8_000, "fastnet_s"), (32, 50_000, "fastnet_m"), (32, 500_000, "fastnet_l"),
    (48, 500, "fastnet_s"), (64, 500, "fastnet_s_s2"), (112, 50_000, "fastnet_m_s4"), (224, 500_000, "fastnet_l_s8"),
])
def test_auto_model_by_data_size_and_resolution(img_size: int, num_train: int, expected: str) -> None:
    assert recipe.choose_model(img_size, num_train) == expected
    assert expected in list_models()


def test_warmup_has_a_floor_in_steps_and_a_cap_for_short_runs() -> None:
    assert recipe.recipe_warmup_steps(10_000) == 500                   # 5% of a long run
    assert recipe.recipe_warmup_steps(100) == recipe.MIN_WARMUP_STEPS  # the floor...
    assert recipe.recipe_warmup_steps(20) == 5                         # ...capped at a quarter of a short run


@pytest.mark.parametrize(("num_train", "world", "expected"), [
    (50_000, 1, 64), (1_024, 1, 64), (1_000, 1, 32), (160, 1, 16), (20, 1, 16), (2_048, 2, 64), (1_500, 2, 32)])
def test_auto_batch_keeps_epochs_at_16_steps_or_more(num_train: int, world: int, expected: int) -> None:
    assert recipe.recipe_batch_size(num_train, world) == expected


def test_recipe_lr_is_linear_in_the_batch() -> None:
    facts = recipe.RunFacts(img_size=32, num_train=5000, global_batch=64, total_steps=10_000)
    double = recipe.RunFacts(img_size=32, num_train=5000, global_batch=128, total_steps=10_000)
    assert recipe.recipe_lr(double) == pytest.approx(2 * recipe.recipe_lr(facts))


def test_lr_is_a_number_or_a_word() -> None:
    assert make_config("train", {"data": Path("d"), "lr": "0.2"}).lr == pytest.approx(0.2)
    assert make_config("train", {"data": Path("d"), "lr": "find"}).lr == "find"
    assert make_config("train", {"data": Path("d")}).lr == "auto"
    assert make_config("train", {"data": Path("d"), "warmup_steps": "7"}).warmup_steps == 7


@pytest.mark.parametrize("value", ["-1", "0"])
def test_a_bad_lr_names_the_flag(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(tmp_path), "--lr", value]) == 2
    assert "--lr: must be positive" in capsys.readouterr().err


def test_a_word_that_is_not_a_choice_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path), "--lr", "banana"])
    assert exit_info.value.code == 2
    assert "--lr: expected a number or auto or find, got 'banana'" in capsys.readouterr().err
    toml = tmp_path / "run.toml"
    toml.write_text('lr = "fast"\n')
    assert main(["train", str(tmp_path), "--config", str(toml)]) == 2
    assert "--lr: expected a number or auto or find, got 'fast'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["fastnet_s", "fastnet_m_s2", "fastnet_l_s4"])
def test_fastnet_any_size_and_folded_batchnorm_predicts_the_same(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, in_channels=1)
    model.train()
    for _ in range(3):   # non-trivial running statistics
        model(torch.randn(8, 1, 40, 40))
    model.eval()
    x = torch.randn(4, 1, 40, 40)
    with torch.no_grad():
        expected = model(x)
        folded = fuse_for_inference(model)(x)
    assert expected.shape == (4, 5)
    assert torch.allclose(expected, folded, atol=1e-5)
    assert FASTNETS[name].stem_stride == {"fastnet_s": 1, "fastnet_m_s2": 2, "fastnet_l_s4": 4}[name]


def test_progressive_sizes_grow_to_full_and_stay() -> None:
    schedule = ResolutionSchedule(start=16, full=32, full_at=4)
    assert [schedule.size_at(e) for e in range(7)] == [16, 16, 24, 24, 32, 32, 32]


def test_auto_is_recorded_and_resolved(split_data: Path, tmp_path: Path) -> None:
    """config.json keeps what was asked (auto) and records what it became; the checkpoint names the real model."""
    run = tmp_path / "auto"
    imgclf.train(split_data, out=run, epochs=1, batch_size=16, precision="fp32")
    config = json.loads(RunDir(run).config_json.read_text())
    chosen = config["derived"]["recipe"]
    assert config["model"] == "auto" and config["lr"] == "auto" and config["warmup_steps"] == "auto"
    assert chosen["model"] == "fastnet_s"           # 48 train images at 32 px
    assert chosen["lr"] == pytest.approx(recipe.recipe_lr(recipe.RunFacts(32, 48, 16, 3)))
    assert chosen["warmup_steps"] == recipe.recipe_warmup_steps(3)
    summary = json.loads(RunDir(run).summary_json.read_text())
    assert summary["model"] == "fastnet_s"
    assert imgclf.evaluate(run, precision="fp32").accuracy >= 0.0   # the checkpoint rebuilds from its metadata


@pytest.mark.parametrize(("native", "num_train", "expected"),
                         [(32, 5000, 32), (48, 5000, 48), (64, 5000, 32), (96, 1000, 48), (224, 10**6, 112),
                          (64, 999, 64), (224, 160, 224)])
def test_auto_size_halves_data_over_48_px_with_enough_images(native: int, num_train: int, expected: int) -> None:
    assert recipe.recipe_img_size(native, num_train) == expected


def test_auto_trains_large_images_at_half_size_and_a_named_model_at_full(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_split_tree(tmp_path / "data", train_per_class=6, val_per_class=2, size=64)
    few = imgclf.train(data, out=tmp_path / "few", epochs=1, batch_size=16, precision="fp32")
    assert json.loads(RunDir(few.run_dir).config_json.read_text())["derived"]["img_size"] == 64   # 18 images
    monkeypatch.setattr(recipe, "HALVE_MIN_IMAGES", 18)
    auto = imgclf.train(data, out=tmp_path / "auto", epochs=1, batch_size=16, precision="fp32")
    derived = json.loads(RunDir(auto.run_dir).config_json.read_text())["derived"]
    assert derived["img_size"] == 32 and derived["recipe"]["model"] == "fastnet_s"
    assert "auto: img size 32: half the data's 64 px (over 48 px and 18 images" in capsys.readouterr().err
    named = imgclf.train(data, out=tmp_path / "named", model="small_cnn", epochs=1, batch_size=16, precision="fp32")
    assert json.loads(RunDir(named.run_dir).config_json.read_text())["derived"]["img_size"] == 64


def test_resume_keeps_the_size_the_run_trained_at() -> None:
    from imgclf.commands.train import upgrade_saved_config

    assert upgrade_saved_config({"img_size": 0}, {"img_size": 64})["img_size"] == 64   # never re-derived
    assert upgrade_saved_config({"img_size": 48}, {"img_size": 48})["img_size"] == 48
