"""FastNet: small VGG-style networks that reach a good accuracy in few epochs on a CPU.

The design follows the CIFAR-10 speed-run networks (airbench and its predecessors): a
3x3 stem, then three groups of ``conv -> max-pool -> BatchNorm -> GELU -> conv -> BatchNorm
-> GELU``, a global max-pool and a bias-free linear head whose logits are scaled down. The
stem keeps full resolution, so a 32 px image is seen at 32, 16 and 8 px (the ImageNet stem
of a torchvision ResNet would shrink it to 8 px before the first block). For larger images the
stem convolution still sees every pixel and a max-pool of ``stem_stride`` after it brings the
rest of the work back to that of a 32-48 px input.

Variants differ in width only; ``--model auto`` picks one by data size (models/auto.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

HEAD_SCALE = 1 / 9   # logits scaled down: a tempered start, as in the speed-run recipes


@dataclass(frozen=True)
class FastNetSpec:
    stem_width: int
    widths: tuple[int, int, int]   # output channels of the three groups
    stem_stride: int = 1


def _conv_bn(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.GELU()]


class ConvGroup(nn.Sequential):
    """conv -> max-pool (halves H and W) -> BN -> GELU -> conv -> BN -> GELU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.MaxPool2d(2),
                         nn.BatchNorm2d(out_ch), nn.GELU(), *_conv_bn(out_ch, out_ch))


class FastNet(nn.Module):
    def __init__(self, spec: FastNetSpec, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.spec = spec
        stem = [nn.Conv2d(in_channels, spec.stem_width, 3, padding=1, bias=False), nn.BatchNorm2d(spec.stem_width),
                nn.GELU()]
        if spec.stem_stride > 1:   # the stem sees every pixel, then pools down (cheap: 3 input channels)
            stem.append(nn.MaxPool2d(spec.stem_stride))
        widths = (spec.stem_width, *spec.widths)
        self.features = nn.Sequential(*stem, *(ConvGroup(a, b) for a, b in zip(widths, widths[1:])),
                                      nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.fc = nn.Linear(spec.widths[-1], num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (B, C, H, W) -> (B, K)
        return self.fc(self.features(x)) * HEAD_SCALE


WIDTHS: dict[str, FastNetSpec] = {
    "fastnet_s": FastNetSpec(24, (32, 64, 128)),
    "fastnet_m": FastNetSpec(32, (64, 128, 256)),
    "fastnet_l": FastNetSpec(32, (64, 256, 256)),
}
STEM_STRIDES = (2, 4, 8)

# every registered name: the widths as they are (stem stride 1) and with a strided stem, e.g. fastnet_m_s2
FASTNETS: dict[str, FastNetSpec] = {
    **WIDTHS,
    **{f"{name}_s{stride}": FastNetSpec(spec.stem_width, spec.widths, stride)
       for name, spec in WIDTHS.items() for stride in STEM_STRIDES},
}
