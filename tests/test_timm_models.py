"""timm architectures as --model timm/<name>: created without download, trained, fine-tuned, exported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imgclf.cli import main
from imgclf.errors import UsageError
from imgclf.models.pretrained import load_pretrained
from imgclf.models.registry import create_model, list_models

timm = pytest.importorskip("timm")
ARCH = "timm/test_efficientnet"   # one of timm's own tiny test architectures


def test_timm_models_are_listed_and_created_from_scratch() -> None:
    assert ARCH in list_models() and "timm/resnet18" in list_models()
    model = create_model(ARCH, num_classes=5, in_channels=1)
    logits = model(torch.zeros(2, 1, 32, 32))
    assert logits.shape == (2, 5)
    with pytest.raises(UsageError, match="timm has no such architecture.*did you mean: timm/test_efficientnet"):
        create_model("timm/test_efficientne", 3)


def test_pretrained_file_loads_into_a_timm_model(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = create_model(ARCH, 7)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    target = create_model(ARCH, 3)
    report = load_pretrained(target, tmp_path / "w.safetensors")
    head = {name for name, _, _ in report.mismatched}
    assert head and all("classifier" in name for name in head) and not report.missing
    stem = next(name for name in report.loaded if name.startswith("conv_stem"))
    assert torch.equal(target.state_dict()[stem], source.state_dict()[stem])


def test_train_a_timm_model_and_predict(split_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", str(split_data), "--model", ARCH, "--epochs", "1", "--img-size", "32",
                 "--batch-size", "16", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), str(split_data / "val" / "circle"), "--backend", "torch"]) == 0
    assert "circle_000.png" in capsys.readouterr().out
