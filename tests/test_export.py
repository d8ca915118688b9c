"""imgclf export: ONNX and TorchScript exports compute what PyTorch computes, or nothing is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from imgclf.cli import main
from imgclf.data.folders import list_split
from imgclf.deploy import export as export_mod
from imgclf.deploy.onnx_model import OnnxClassifier
from imgclf.deploy.probabilities import logits_to_probs as numpy_probs
from imgclf.deploy.sidecar import SIDECAR_NAME, read_export
from imgclf.engine.inference import decode_labelled, load_run_model, predict_probs
from imgclf.models.outputs import logits_to_probs as torch_probs

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
SRC = Path(__file__).resolve().parents[1] / "src"


def held_out(run: Path) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 val images of the run (never seen in training) and their labels."""
    loaded = load_run_model(run, device="cpu", precision="fp32")
    paths, targets, _ = list_split(loaded.data_root, "val", loaded.classes)
    return decode_labelled(loaded, paths, "val"), np.asarray(targets)


def exported_probs(folder: Path, images: np.ndarray) -> np.ndarray:
    info = read_export(folder)
    if info.runtime == "onnx":
        return OnnxClassifier(info.model_path, info.output).predict_probs(images, batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # torch.jit is deprecated in torch 2.14, still loads
        module = torch.jit.load(str(info.model_path))
    with torch.no_grad():
        return torch.cat([module(torch.from_numpy(images[i:i + 4]))[1] for i in range(0, len(images), 4)]).numpy()


def check_parity(run: Path, folder: Path, which: str = "best") -> None:
    """Top-1 agreement 100% and max |dp| <= 1e-4 against imgclf's own torch path, batches of 4 (not 2)."""
    images, _ = held_out(run)
    reference = predict_probs(load_run_model(run, which, device="cpu", precision="fp32"), images, 64).numpy()
    probs = exported_probs(folder, images.numpy())
    assert (probs.argmax(1) == reference.argmax(1)).all()
    assert np.abs(probs - reference).max() <= 1e-4
    sidecar = json.loads((folder / SIDECAR_NAME).read_text())
    assert sidecar["parity"]["top1_agreement"] == 1.0 and sidecar["parity"]["max_abs_prob_diff"] <= 1e-4
    assert sidecar["input"]["dtype"] == "uint8" and sidecar["input"]["shape"][0] == "batch"


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_on_held_out_images(trained_run: Path, tmp_path: Path, fmt: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / fmt
    assert main(["export", str(trained_run), "--format", fmt, "--out", str(out)]) == 0
    assert f"export folder: {out}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted([SIDECAR_NAME, "model.onnx" if fmt == "onnx" else "model.pt"])
    info = read_export(out)
    assert info.classes == ["circle", "cross", "square"] and info.img_size == 32 and info.precision == "fp32"
    check_parity(trained_run, out)
    assert main(["export", str(trained_run), "--format", fmt, "--out", str(out)]) == 1   # exists: needs --force
    assert main(["export", str(trained_run), "--format", fmt, "--out", str(out), "--force"]) == 0


def test_refused_export_names_the_numbers_and_leaves_nothing(trained_run: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """An exporter that writes a different network (here: the same one with its head weights changed)."""
    real = export_mod.export_onnx

    def export_other(wrapper: torch.nn.Module, example: torch.Tensor, path: Path) -> str:
        other = export_mod.ExportWrapper(wrapper.model, [0.0] * 3, [1.0] * 3)   # normalisation left out
        return real(other, example, path)

    monkeypatch.setitem(export_mod.EXPORTERS, "onnx", export_other)
    out = tmp_path / "refused"
    assert main(["export", str(trained_run), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "refusing the export" in err and "top-1" in err and "differ by up to" in err
    assert not out.exists() and not any(p.name.startswith(".imgclf-tmp") for p in tmp_path.iterdir())


def test_int8_export_reports_accuracy_next_to_fp32(trained_run: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from imgclf.deploy import export_folder

    monkeypatch.setattr(export_folder, "INT8_MAX_DROP_POINTS", -1.0)   # any result counts as a loss here
    out = tmp_path / "int8"
    assert main(["export", str(trained_run), "--int8", "--out", str(out), "--calibration-images", "24"]) == 0
    captured = capsys.readouterr()
    assert "val accuracy fp32" in captured.out and "val accuracy int8" in captured.out
    assert "THE INT8 MODEL'S VAL ACCURACY MOVES BY" in captured.err
    info = read_export(out)
    report = info.extra["int8"]
    assert info.precision == "int8" and report["calibration_images"] == 24 and report["within_limit"] is False
    images, labels = held_out(trained_run)
    probs = exported_probs(out, images.numpy())
    assert float(np.mean(probs.argmax(1) == labels)) == pytest.approx(report["val_accuracy_int8"])
    assert main(["export", str(trained_run), "--int8", "--format", "torchscript"]) == 2


def test_predict_from_an_export_imports_no_torch(trained_run: Path, tmp_path: Path) -> None:
    """A real process runs the CLI on an ONNX export; torch must not be imported on that path."""
    out = tmp_path / "onnx"
    assert main(["export", str(trained_run), "--out", str(out)]) == 0
    val = Path(json.loads((trained_run / "config.json").read_text())["data"]) / "val"
    code = ("import sys, json; from imgclf.cli import main; "
            f"rc = main(['predict', {str(out)!r}, {str(val)!r}, '--json', '--tta']); "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]; "
            "sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)["predictions"]
    assert len(rows) == 15
    loaded = load_run_model(trained_run, device="cpu", precision="fp32")
    tensors, _ = held_out(trained_run)
    reference = predict_probs(loaded, tensors, 64, tta_flip=True).numpy()
    names = sorted(loaded.classes)
    for row, expected in zip(sorted(rows, key=lambda r: r["path"]), reference):   # val is sorted by class, name
        assert row["top"][0]["class"] == names[int(expected.argmax())]
        assert abs(row["top"][0]["prob"] - float(expected.max())) <= 1e-4


@pytest.mark.parametrize("kind", ["softmax", "sigmoid1", "multilabel"])
def test_numpy_probabilities_equal_the_torch_definition(kind: str) -> None:
    logits = torch.randn(7, 1 if kind == "sigmoid1" else 4, generator=torch.Generator().manual_seed(1)) * 5
    assert np.allclose(numpy_probs(logits.numpy(), kind), torch_probs(logits, kind).numpy(), atol=1e-6)


def train_run(data: Path, out: Path, model: str, img_size: int = 32) -> Path:
    assert main(["train", str(data), "--model", model, "--epochs", "1", "--img-size", str(img_size),
                 "--batch-size", "16", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("model", ["resnet18", "timm/test_efficientnet"])
def test_resnet18_and_timm_exports_match_pytorch(model: str, split_data: Path, tmp_path: Path) -> None:
    if model.startswith("timm/"):
        pytest.importorskip("timm")
    run = train_run(split_data, tmp_path / "run", model)
    for fmt in ("onnx", "torchscript"):
        assert main(["export", str(run), "--format", fmt]) == 0
        check_parity(run, run / "export" / f"{fmt}-best")


@pytest.mark.slow
def test_resnet18_export_matches_pytorch_at_112px(tmp_path: Path) -> None:
    from conftest import make_split_tree

    data = make_split_tree(tmp_path / "data", train_per_class=24, val_per_class=20, size=128)
    run = train_run(data, tmp_path / "run", "resnet18", img_size=112)
    for fmt in ("onnx", "torchscript"):
        assert main(["export", str(run), "--format", fmt, "--checkpoint", "last"]) == 0
        check_parity(run, run / "export" / f"{fmt}-last", "last")


@pytest.mark.slow
def test_the_infer_extra_alone_predicts_from_an_export(trained_run: Path, tmp_path: Path) -> None:
    """A fresh virtual environment with only ``pip install 'imgclf[infer]'``: no torch, and predict works."""
    out = tmp_path / "onnx"
    assert main(["export", str(trained_run), "--out", str(out)]) == 0
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{SRC.parent}[infer]"],
                             capture_output=True, text=True, timeout=1200)
    assert install.returncode == 0, install.stderr[-2000:]
    assert subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True).returncode != 0
    val = Path(json.loads((trained_run / "config.json").read_text())["data"]) / "val"
    done = subprocess.run([str(venv / "bin" / "imgclf"), "predict", str(out), str(val), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(json.loads(done.stdout)["predictions"]) == 15
    train = subprocess.run([str(venv / "bin" / "imgclf"), "train", str(val.parent)], capture_output=True, text=True)
    assert train.returncode == 1 and "pip install 'imgclf[train]'" in train.stderr


def test_int8_export_of_the_default_model(split_data: Path, tmp_path: Path) -> None:
    """The recipe's FastNet quantizes too (its pooled head once broke onnxruntime's symbolic shape inference)."""
    run = tmp_path / "fastnet"
    assert main(["train", str(split_data), "--out", str(run), "--model", "fastnet_s", "--epochs", "1",
                 "--img-size", "32", "--seed", "0"]) == 0
    out = tmp_path / "int8"
    assert main(["export", str(run), "--int8", "--out", str(out), "--calibration-images", "24"]) == 0
    info = read_export(out)
    assert info.precision == "int8" and info.extra["int8"]["calibration_images"] == 24
    images, labels = held_out(run)
    probs = exported_probs(out, images.numpy())
    assert float(np.mean(probs.argmax(1) == labels)) == pytest.approx(info.extra["int8"]["val_accuracy_int8"])


def test_calibration_batches_all_have_one_size() -> None:
    from imgclf.deploy.quantize import even_batch

    assert [even_batch(n) for n in (256, 24, 7, 1, 17)] == [16, 12, 7, 1, 1]
