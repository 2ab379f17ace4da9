"""ResNet-50 for ImageNet (OpenLTH's imagenet_resnet_50): the standard bottleneck network.

7x7/2 conv 64 + BN + ReLU + 3x3/2 max-pool; stages of 3, 4, 6, 3 bottleneck blocks (1x1, 3x3,
1x1 with 4x expansion; the stride sits on the 3x3 conv, as in torchvision's v1.5); a 1x1 conv +
BN shortcut where the shape changes; global average pool; Linear(2048, classes). Module names
follow the CIFAR ResNet's (conv, bn, blocks.N.conv1..3/bn1..3, blocks.N.shortcut.0/1, fc).
25,557,032 parameters for 1000 classes; the number of classes follows the data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, f_in: int, width: int, stride: int):
        super().__init__()
        f_out = width * self.expansion
        self.conv1 = nn.Conv2d(f_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, f_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(f_out)
        if stride != 1 or f_in != f_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(f_in, f_out, 1, stride=stride, bias=False), nn.BatchNorm2d(f_out)
            )
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ImageNetResNet(nn.Module):
    linear_stem = "conv"

    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000):
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(64)
        blocks, f_in = [], 64
        for stage, count in enumerate(layers):
            width = 64 * 2**stage
            for i in range(count):
                blocks.append(Bottleneck(f_in, width, stride=2 if stage > 0 and i == 0 else 1))
                f_in = width * Bottleneck.expansion
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(f_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        x = self.blocks(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)
