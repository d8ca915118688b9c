"""A deliberately cheap classifier for the scale benchmark (``--model scale_model:TinyNet``).

A 4x4 patchify stem, one strided conv and global pooling: a step costs little next to the data
path, so the scale benchmark measures how decoding, caching and batching grow with the data,
and a 100,000-image epoch takes about a minute on 2 cores. It learns the generated photo classes
well enough to show that the pipeline trains, but it is not a recommendation.
"""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 24, 4, stride=4), nn.BatchNorm2d(24), nn.ReLU(inplace=True),
            nn.Conv2d(24, 48, 3, stride=2, padding=1), nn.BatchNorm2d(48), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(48, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (B, C, H, W) -> (B, K)
        return self.fc(self.features(x))
