"""imgclf calibrate end to end: the temperature is stored, used by evaluate/predict, and helps where it should."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

import imgclf
from imgclf.artifacts import RunDir
from imgclf.cli import main
from imgclf.commands.demo import write_digits
from imgclf.engine.checkpoint import load_weights, save_weights

SHARPEN = 4.0   # the over-confident model's logits are this many times too large


def overconfident_run(root: Path, per_class: int, epochs: int, seed: int = 0) -> Path:
    """Real digit scans; a small train split fitted long with Adam and no label smoothing or weight decay.

    How over-confident such a model is depends on the seed and the CPU's arithmetic (test ECE
    0.02-0.05, within the noise of the estimate on a few hundred images), so the last layer of
    the checkpoint is then scaled by ``SHARPEN``: the same predictions, logits known to be too
    large. 100 per class gives ~420 test images: ECE fell on 20 of 20 tries (5 seeds, fp32 and
    bf16, 6 epochs), 40 per class left it within noise.
    """
    write_digits(root / "raw", per_class=per_class)
    imgclf.prepare(root / "raw", root / "data", val=0.42, test=0.42, seed=seed)
    imgclf.train(root / "data", out=root / "run", model="small_cnn", img_size=16, channels="gray", epochs=epochs,
                 batch_size=16, optimizer="adam", lr=0.003, weight_decay=0.0, label_smoothing=0.0,
                 scheduler="constant", warmup_steps=0, crop_padding=0, seed=seed)
    weights = RunDir(root / "run").weights("last")
    tensors, meta = load_weights(weights)
    for name in ("classifier.4.weight", "classifier.4.bias"):   # SmallCNN's final Linear
        tensors[name] = tensors[name] * SHARPEN
    save_weights(weights, tensors, meta)
    return root / "run"


def before_and_after(run: Path) -> tuple[dict, dict, float]:
    """Calibration numbers on the test split before and after fitting a temperature on val."""
    before = imgclf.evaluate(run, split="test", checkpoint="last").summary["calibration"]
    temperature = imgclf.calibrate(run, split="val", checkpoint="last").temperature
    after = imgclf.evaluate(run, split="test", checkpoint="last").summary["calibration"]
    return before, after, temperature


def test_temperature_scaling_lowers_ece_and_nll_on_a_split_it_was_not_fitted_on(tmp_path: Path) -> None:
    run = overconfident_run(tmp_path, per_class=100, epochs=6)
    before, after, temperature = before_and_after(run)
    assert temperature > SHARPEN / 2              # over-confident: the logits are too large
    assert after["nll"] < before["nll"]
    assert after["ece"] < before["ece"]
    assert after["temperature"] == pytest.approx(temperature)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_temperature_scaling_helps_on_held_out_digits_for_several_seeds(tmp_path: Path, seed: int) -> None:
    run = overconfident_run(tmp_path, per_class=100, epochs=6, seed=seed)
    before, after, temperature = before_and_after(run)
    print(f"seed {seed}: T {temperature:.3f}, test ECE {before['ece']:.4f} -> {after['ece']:.4f}, "
          f"NLL {before['nll']:.4f} -> {after['nll']:.4f}, Brier {before['brier']:.4f} -> {after['brier']:.4f}")
    assert temperature > SHARPEN / 2 and after["nll"] < before["nll"] and after["ece"] < before["ece"]


def prob_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


def test_calibrate_stores_the_temperature_and_every_command_uses_it(trained_run: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    weights = RunDir(run).weights("best")
    tensors_before, meta_before = load_weights(weights)

    assert main(["calibrate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "fitted on val" in out
    tensors_after, meta_after = load_weights(weights)
    record = json.loads(RunDir(run).calibration_json.read_text())["best"]
    assert meta_after == {**meta_before, "temperature": record["temperature"]}
    assert tensors_after.keys() == tensors_before.keys()
    assert all(torch.equal(tensors_after[k], tensors_before[k]) for k in tensors_before)
    assert record["split"] == "val" and record["num_images"] == 15 and record["checkpoint"] == "best"
    assert record["data"] == str(Path(json.loads(RunDir(run).config_json.read_text())["data"]).resolve())
    assert record["after"]["nll"] <= record["before"]["nll"]

    evaluated = imgclf.evaluate(run)   # same split and weights: the numbers calibrate reported "after"
    assert evaluated.summary["calibration"]["temperature"] == pytest.approx(record["temperature"])
    assert evaluated.loss == pytest.approx(record["after"]["nll"], abs=1e-4)
    assert evaluated.summary["calibration"]["ece"] == pytest.approx(record["after"]["ece"], abs=1e-4)
    assert RunDir(run).reliability_png.stat().st_size > 1000

    val_images = sorted((Path(json.loads(RunDir(run).config_json.read_text())["data"]) / "val").rglob("*.png"))
    imgclf.predict(run, val_images, csv=tmp_path / "p.csv")
    predicted, evaluated_rows = prob_rows(tmp_path / "p.csv"), prob_rows(RunDir(run).predictions_csv)
    for path, row in predicted.items():
        for key in (k for k in row if k.startswith("prob_")):
            assert float(row[key]) == pytest.approx(float(evaluated_rows[path][key]), abs=1e-5)

    assert main(["calibrate", str(run), "--checkpoint", "last"]) == 0
    assert sorted(json.loads(RunDir(run).calibration_json.read_text())) == ["best", "last"]
    assert main(["calibrate", str(run), "--reset"]) == 0
    assert load_weights(weights)[1] == meta_before
    assert sorted(json.loads(RunDir(run).calibration_json.read_text())) == ["last"]   # the other record stays
    assert main(["calibrate", str(run), "--reset", "--checkpoint", "last"]) == 0
    assert not RunDir(run).calibration_json.exists()
    logged = json.loads(RunDir(run).summary_json.read_text())["best"]
    assert imgclf.evaluate(run, precision="fp32").loss == pytest.approx(logged["val_loss"], abs=1e-5)


def test_calibrate_names_a_missing_split(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    assert main(["calibrate", str(run), "--split", "calib"]) == 1
    assert "calib" in capsys.readouterr().err


def test_the_onnxruntime_backend_and_the_export_carry_the_temperature(trained_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from imgclf.deploy.sidecar import read_export

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    uncalibrated = imgclf.evaluate(run, split="val", backend="onnxruntime").loss   # exports once, at T = 1
    temperature = imgclf.calibrate(run).temperature
    on_torch = imgclf.evaluate(run, split="val", backend="torch", precision="fp32")   # not bf16 on an AMX CPU
    on_onnx = imgclf.evaluate(run, split="val", backend="onnxruntime")   # the weights changed: exported again
    assert on_onnx.loss == pytest.approx(on_torch.loss, abs=1e-4) and on_onnx.loss != pytest.approx(uncalibrated)
    assert on_onnx.summary["calibration"]["temperature"] == pytest.approx(temperature)
    assert read_export(RunDir(run).export_dir("onnx", "best", False)).temperature == pytest.approx(temperature)
