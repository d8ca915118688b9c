"""Inference-time model handling: BatchNorm fusion and the consent needed to import a model's code."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

from imgclf.artifacts import RunDir
from imgclf.cli import main
from imgclf.engine.checkpoint import load_weights, save_weights
from imgclf.engine.inference import fuse_for_inference


class Branchy(nn.Module):
    """Conv + BatchNorm with data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return y if float(y.sum()) > 0 else -y


def test_failed_batchnorm_fusion_warns_and_keeps_the_model(capsys) -> None:
    model = Branchy()
    assert fuse_for_inference(model) is model
    err = capsys.readouterr().err
    assert "BatchNorm was not folded" in err and "unfused model" in err


def test_traceable_model_is_fused_without_a_warning(capsys) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    x = torch.randn(2, 3, 8, 8)
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-5)
    assert "BatchNorm" not in capsys.readouterr().err


# --- consent before importing a model's module ----------------------------------------------

def _marker_module(folder: Path, name: str, marker: Path) -> str:
    """An importable module that leaves ``marker`` behind when imported; its Net is imgclf's small CNN."""
    (folder / f"{name}.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "from imgclf.models.small_cnn import SmallCNN as Net\n")
    return f"{name}:Net"


def _name_model_in(run: Path, spec: str) -> None:
    """Make the run's weights and config.json name ``spec`` as their model."""
    for which in ("best", "last"):
        state, meta = load_weights(RunDir(run).weights(which))
        save_weights(RunDir(run).weights(which), state, {**meta, "model": spec})
    config = json.loads(RunDir(run).config_json.read_text())
    RunDir(run).config_json.write_text(json.dumps({**config, "model": spec}))


def test_model_code_named_by_a_checkpoint_needs_consent(trained_run: Path, split_data: Path, tmp_path: Path,
                                                         monkeypatch, capsys) -> None:
    run, marker = tmp_path / "run", tmp_path / "imported.txt"
    shutil.copytree(trained_run, run)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = _marker_module(tmp_path, "marker_model_consent", marker)
    _name_model_in(run, spec)
    image = next((split_data / "val" / "circle").iterdir())
    for argv in (["predict", str(run), str(image)], ["evaluate", str(run)], ["inspect", str(run)],
                 ["train", "--resume", str(run), "--epochs", "3"]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "--trust-model-code" in err and spec in err, err
        assert not marker.exists() and "marker_model_consent" not in sys.modules, argv
    assert "--model marker_model_consent:Net" in err            # train: naming it yourself is consent too
    assert main(["predict", str(run), str(image), "--trust-model-code"]) == 0
    assert marker.read_text() == "imported"


def test_torchvision_and_own_models_need_no_consent(trained_run: Path, split_data: Path, capsys) -> None:
    image = next((split_data / "val" / "circle").iterdir())
    assert main(["predict", str(trained_run), str(image)]) == 0     # small_cnn
    assert "--trust-model-code" not in capsys.readouterr().err
