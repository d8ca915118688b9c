"""A tiny model without BatchNorm or dropout: its gradients do not depend on how a batch is split."""

from __future__ import annotations

import torch
from torch import nn


class TinyConvNet(nn.Module):
    def __init__(self, num_classes: int = 3, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Linear(8 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        return self.head(self.features(x))
