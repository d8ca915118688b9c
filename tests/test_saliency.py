"""Grad-CAM: the layer it picks, the maps it computes (against the closed form of a CAM network), overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imgclf.analysis.heatmaps import overlay
from imgclf.analysis.saliency import CamSetup, find_cam_layer, grad_cam, peak_position, resolve_layer
from imgclf.errors import UsageError
from imgclf.models.registry import create_model


@pytest.mark.parametrize(("name", "in_channels", "expected"), [
    ("small_cnn", 3, "features"),
    ("small_cnn", 1, "features"),
    ("resnet18", 3, "layer4"),
    ("tests.ddp_models:TinyConvNet", 3, "features.2"),
])
def test_the_deepest_spatial_map_is_found(name: str, in_channels: int, expected: str) -> None:
    model = create_model(name, 3, in_channels).eval()
    assert find_cam_layer(model, torch.zeros(1, in_channels, 64, 64)) == expected


def test_a_model_without_convolutions_needs_layer() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(UsageError, match="--layer"):
        find_cam_layer(model, torch.zeros(1, 3, 2, 2))


def test_unknown_layer_lists_the_candidates() -> None:
    model = create_model("resnet18", 2).eval()
    with pytest.raises(UsageError, match=r"--layer layer9: no such module.*layer4"):
        resolve_layer(model, "layer9", torch.zeros(1, 3, 64, 64))
    assert resolve_layer(model, "layer3", torch.zeros(1, 3, 64, 64)) == "layer3"


class CamNet(nn.Module):
    """conv -> ReLU -> global average pool -> linear: the network CAM (Zhou et al., 2016) was defined on."""

    def __init__(self, inplace: bool = False, outputs: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU(inplace=inplace)
        self.fc = nn.Linear(6, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


def setup_for(model: nn.Module, layer: str, output: str = "softmax") -> CamSetup:
    return CamSetup(model.eval(), layer, torch.device("cpu"), torch.zeros(3), torch.ones(3) / 255.0, None, output)


def closed_form_cam(model: CamNet, images: torch.Tensor, classes: torch.Tensor, sign: float = 1.0) -> np.ndarray:
    """For this network Grad-CAM on the ReLU output is relu(sum_k w[c, k] A_k), up to scale."""
    with torch.no_grad():
        maps = model.relu(model.conv(images.float()))                       # (B, 6, h, w)
        weights = sign * model.fc.weight[classes]                            # (B, 6)
        cam = F.relu((weights[:, :, None, None] * maps).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
        return (cam / cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]).numpy()


def test_grad_cam_equals_cam_on_a_cam_network() -> None:
    torch.manual_seed(0)
    model = CamNet()
    images = torch.randint(0, 256, (5, 3, 12, 12), dtype=torch.uint8)
    classes = torch.tensor([0, 1, 2, 1, 0])
    (maps,) = grad_cam(setup_for(model, "relu"), images, [classes], batch_size=2)
    assert maps.shape == (5, 12, 12) and maps.max() == pytest.approx(1.0)
    np.testing.assert_allclose(maps, closed_form_cam(model, images, classes), atol=1e-5)


def test_in_place_relu_after_the_layer_does_not_break_the_gradient() -> None:
    torch.manual_seed(1)
    plain, inplace = CamNet(), CamNet(inplace=True)
    inplace.load_state_dict(plain.state_dict())
    images = torch.randint(0, 256, (3, 3, 10, 10), dtype=torch.uint8)
    classes = torch.tensor([2, 0, 1])
    (expected,) = grad_cam(setup_for(plain, "conv"), images, [classes])
    (got,) = grad_cam(setup_for(inplace, "conv"), images, [classes])
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_one_logit_models_explain_class_zero_with_the_negated_logit() -> None:
    torch.manual_seed(2)
    model = CamNet(outputs=1)
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    zeros, ones = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    class0, class1 = grad_cam(setup_for(model, "relu", "sigmoid1"), images, [zeros, ones])
    np.testing.assert_allclose(class1, closed_form_cam(model, images, zeros), atol=1e-5)
    np.testing.assert_allclose(class0, closed_form_cam(model, images, zeros, sign=-1.0), atol=1e-5)


def test_peak_and_overlay() -> None:
    cam = np.zeros((32, 32), np.float32)
    cam[20, 5] = 1.0
    assert peak_position(cam) == (20, 5)
    grey = np.full((1, 32, 32), 100, np.uint8)
    picture = overlay(grey, cam)
    assert picture.shape == (3, 160, 160) and picture.dtype == np.uint8
    cold = picture[:, 0, 159]      # far from the peak: the colour map's blue over grey
    hot = picture[:, 20 * 5 + 2, 5 * 5 + 2]
    assert cold[2] > cold[0] and hot[0] > hot[2]
