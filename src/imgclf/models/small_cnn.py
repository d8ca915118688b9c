"""The small CNN of the classic PyTorch MNIST example, made size-agnostic."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv32 -> conv64 -> maxpool -> dropout -> fc128 -> dropout -> fc.

    As in the MNIST example, with an adaptive pool so any input size works.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, 1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, 1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2), nn.Dropout(0.25),
            nn.AdaptiveAvgPool2d(12),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 12 * 12, 128), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        return self.classifier(self.features(x))
