"""--pretrained: tolerant loading with a report; --weights from the local hub cache (downloads: test_weights_download)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imgclf.errors import ImgclfError
from imgclf.models.pretrained import (cached_weights_file, load_pretrained, load_torchvision_weights,
                                      read_state_dict)
from imgclf.models.registry import create_model


def test_pretrained_from_other_classes_loads_all_but_the_head(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = create_model("small_cnn", 5)
    path = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    target = create_model("small_cnn", 3)
    report = load_pretrained(target, path)
    assert {m[0] for m in report.mismatched} == {"classifier.4.weight", "classifier.4.bias"}
    assert torch.equal(target.features[0].weight, source.features[0].weight)
    assert target.classifier[4].weight.shape == (3, 128)
    assert "classifier.4.weight [5, 128] vs [3, 128]" in report.summary()


def test_torch_state_dict_with_wrappers_and_prefixes(tmp_path: Path) -> None:
    source = create_model("resnet18", 4)
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in source.state_dict().items()}, "extra": 1.0}, path)
    assert set(read_state_dict(path)) == set(source.state_dict())
    target = create_model("resnet18", 4, in_channels=1)
    report = load_pretrained(target, path)
    assert report.adapted == ["conv1.weight"] and not report.missing and not report.unexpected
    assert torch.allclose(target.conv1.weight, source.conv1.weight.mean(1, keepdim=True))


def test_bad_and_foreign_files_fail_with_the_flag_named(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ImgclfError, match="--pretrained .*junk.pt"):
        read_state_dict(tmp_path / "junk.pt")
    torch.save({"x.weight": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(ImgclfError, match="no tensor fits"):
        load_pretrained(create_model("small_cnn", 2), tmp_path / "other.pt")


def test_weights_default_fails_fast_offline_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert cached_weights_file("resnet18", "DEFAULT") == expected
    model = create_model("resnet18", 3)
    with pytest.raises(ImgclfError, match="resnet18-f37072fd.pth.*--pretrained PATH"):
        load_torchvision_weights(model, "resnet18", "DEFAULT", offline=True)
    expected.parent.mkdir(parents=True)
    source = create_model("resnet18", 1000)
    torch.save(source.state_dict(), expected)
    report = load_torchvision_weights(model, "resnet18", "DEFAULT")
    assert {m[0] for m in report.mismatched} == {"fc.weight", "fc.bias"}
    assert torch.equal(model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
