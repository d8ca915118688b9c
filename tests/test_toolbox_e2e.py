"""The training toolbox end to end through the CLI: multi-label, distillation, fine-tuning, BCE, balance."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import imgclf
import imgclf.cli
from imgclf.artifacts import RunDir
from imgclf.engine.checkpoint import load_weights

FAST = ["--model", "small_cnn", "--img-size", "32", "--precision", "fp32", "--batch-size", "16"]


def metrics(run: Path) -> list[dict[str, str]]:
    with open(RunDir(run).metrics_csv, newline="") as f:
        return list(csv.DictReader(f))


def write_attribute_images(src: Path, per_combo: int = 24) -> None:
    """Label-file layout: each image carries a colour (red/blue) and a shape (circle/square)."""
    rng = np.random.default_rng(0)
    src.mkdir(parents=True)
    for colour, rgb in (("red", (220, 40, 40)), ("blue", (40, 60, 220))):
        for shape in ("circle", "square"):
            for i in range(per_combo):
                img = Image.fromarray(rng.integers(0, 50, (32, 32, 3), dtype=np.uint8))
                m = int(rng.integers(5, 10))
                box = (m, m, 32 - m, 32 - m)
                draw = ImageDraw.Draw(img)
                (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=rgb)
                name = f"{colour}_{shape}_{i:02d}"
                img.save(src / f"{name}.png")
                (src / f"{name}.txt").write_text(f"{colour}\n{shape}\n")


@pytest.mark.slow
def test_multilabel_two_attributes_learned_above_90_percent(tmp_path: Path) -> None:
    from imgclf.data.multilabel import read_labels_csv
    from imgclf.engine.inference import load_run_model, predict_probs
    from imgclf.data.loading import load_images
    from imgclf.data.multilabel import multi_hot

    write_attribute_images(tmp_path / "raw")
    assert imgclf.cli.main(["prepare", str(tmp_path / "raw"), str(tmp_path / "data"), "--val", "0.25"]) == 0
    assert (tmp_path / "data" / "train" / "labels.csv").is_file()
    run = tmp_path / "run"
    code = imgclf.cli.main(["train", str(tmp_path / "data"), "--out", str(run), *FAST, "--epochs", "25",
                            "--optimizer", "adam", "--lr", "0.002", "--label-smoothing", "0", "--crop-padding", "2"])
    assert code == 0
    config = json.loads(RunDir(run).config_json.read_text())
    assert config["derived"]["output"] == "multilabel"
    rows = metrics(run)
    assert {"val_map", "val_exact_match", "val_f1"} <= set(rows[-1])
    loaded = load_run_model(run, "best", "cpu", "fp32")
    assert loaded.meta["output"] == "multilabel" and loaded.classes == ["blue", "circle", "red", "square"]
    paths, labels = read_labels_csv(tmp_path / "data" / "val")
    images, ok, _ = load_images(paths, 32, 3)
    probs = predict_probs(loaded, images)
    targets = multi_hot([labels[i] for i in ok], loaded.classes)
    accuracy = ((probs >= 0.5) == targets.bool()).float().mean(dim=0)   # (K,) per label
    assert bool((accuracy > 0.9).all()), accuracy


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Prepared-style digits: 25 train + 8 val images per digit, 8x8 scans as PNG."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits")
    bunch = load_digits()
    seen: dict[int, int] = {}
    for pixels, label in zip(bunch.images, bunch.target):
        n = seen.get(int(label), 0)
        if n >= 33:
            continue
        seen[int(label)] = n + 1
        folder = root / ("train" if n < 25 else "val") / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels * 255 / 16 + 0.5, 0, 255).astype(np.uint8)).save(folder / f"{n}.png")
    return root


@pytest.mark.slow
def test_distillation_small_cnn_from_a_resnet18_teacher(digits: Path, tmp_path: Path) -> None:
    teacher = tmp_path / "teacher"
    common = ["--img-size", "32", "--precision", "fp32", "--batch-size", "32", "--channels", "gray"]
    assert imgclf.cli.main(["train", str(digits), "--out", str(teacher), "--model", "resnet18", "--epochs", "2",
                            "--optimizer", "adam", "--lr", "0.002", *common]) == 0
    student = tmp_path / "student"
    assert imgclf.cli.main(["train", str(digits), "--out", str(student), "--model", "small_cnn", "--epochs", "2",
                            "--optimizer", "adam", "--lr", "0.002", "--teacher", str(teacher),
                            "--kd-temperature", "4", "--kd-alpha", "0.7", *common]) == 0
    config = json.loads(RunDir(student).config_json.read_text())
    assert config["teacher"] == str(teacher) and config["kd_temperature"] == 4.0 and config["kd_alpha"] == 0.7
    rows = metrics(student)
    assert len(rows) == 2 and float(rows[-1]["val_acc"]) > 0.1   # above chance (10 classes) after 2 short epochs


def test_finetune_from_a_run_on_other_classes_loads_all_but_the_head(split_data: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "source"
    assert imgclf.cli.main(["train", str(split_data), "--out", str(source), *FAST, "--epochs", "1"]) == 0
    two = tmp_path / "two"
    for split in ("train", "val"):
        for cls in ("circle", "square"):
            (two / split).mkdir(parents=True, exist_ok=True)
            (two / split / cls).symlink_to(split_data / split / cls)
    capsys.readouterr()
    tuned = tmp_path / "tuned"
    weights = RunDir(source).weights("best")
    assert imgclf.cli.main(["train", str(two), "--out", str(tuned), *FAST, "--epochs", "1", "--pretrained",
                            str(weights), "--freeze-backbone", "--head-lr", "0.2"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "kept fresh (other shape):" in err and "classifier.4.weight [3, 128] vs [2, 128]" in err, err[:400]
    before, _ = load_weights(weights)
    after, _ = load_weights(RunDir(tuned).weights("last"))
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("classifier.4"))
    assert after["classifier.4.weight"].shape == (2, 128)
    info = imgclf.inspect(tuned, json=True).info
    assert info["config"]["freeze_backbone"] is True and info["config"]["head_lr"] == 0.2
    assert len({g["initial_lr"] for g in info["optimizer"]["param_groups"]}) == 2


def test_bce_single_logit_two_classes_and_balanced_sampler(tmp_path: Path) -> None:
    from conftest import make_split_tree
    from imgclf.engine.inference import load_run_model

    data = make_split_tree(tmp_path / "data", train_per_class=12, classes=("circle", "square"))
    for path in sorted((data / "train" / "square").iterdir())[3:]:
        path.unlink()                                               # 12 vs 3: imbalanced
    run = tmp_path / "run"
    assert imgclf.cli.main(["train", str(data), "--out", str(run), *FAST, "--epochs", "2", "--loss", "bce",
                            "--balance", "sampler"]) == 0
    loaded = load_run_model(run, "best", "cpu", "fp32", fused=False)
    assert loaded.meta["output"] == "sigmoid1" and loaded.model.classifier[4].out_features == 1
    result = imgclf.predict(run, [data / "val"], topk=2)
    assert all(sum(t["prob"] for t in r["top"]) == pytest.approx(1.0, abs=1e-5) for r in result.predictions)
    evaluated = imgclf.evaluate(run, checkpoint="last", precision="fp32")   # the one BCE of a single logit
    assert evaluated.loss == pytest.approx(float(metrics(run)[-1]["val_loss"]), abs=1e-5)


def test_chained_schedule_early_stopping_and_lbfgs_from_the_cli(split_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert imgclf.cli.main(["train", str(split_data), "--out", str(run), *FAST, "--epochs", "4",
                            "--scheduler", "exponential,multistep", "--warmup-steps", "0",
                            "--sched-args", "exponential:gamma=0.5", "multistep:milestones=2,gamma=0.1",
                            "--patience", "1", "--early-stop-metric", "val_acc", "--lr", "1e-9"]) == 0
    rows = metrics(run)
    assert [float(r["lr"]) for r in rows][:2] == pytest.approx([1e-9, 0.5e-9])   # lr logged after each epoch's steps
    assert len(rows) == 2                                         # nothing improves at lr 1e-9: stopped early
    lbfgs = tmp_path / "lbfgs"
    assert imgclf.cli.main(["train", str(split_data), "--out", str(lbfgs), *FAST, "--epochs", "1",
                            "--optimizer", "lbfgs", "--lr", "0.5", "--clip-grad", "1"]) == 0
    assert float(metrics(lbfgs)[-1]["train_loss"]) < 5
