"""VGG-16 for CIFAR-10 (OpenLTH's cifar_vgg_16).

13 x (3x3 conv with bias + BN + ReLU) in the plan 64,64,M,128,128,M,256x3,M,512x3,M,512x3,
max-pools at M, a final 2x2 average pool, then one Linear(512, classes). Module names follow
OpenLTH (layers.N.conv, layers.N.bn, fc). 14,728,266 parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PLAN_16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]


class ConvBN(nn.Module):
    def __init__(self, f_in: int, f_out: int):
        super().__init__()
        self.conv = nn.Conv2d(f_in, f_out, 3, padding=1)
        self.bn = nn.BatchNorm2d(f_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class CifarVGG(nn.Module):
    linear_stem = "layers.0.conv"

    def __init__(self, plan=PLAN_16, num_classes: int = 10):
        super().__init__()
        layers, f_in = [], 3
        for spec in plan:
            if spec == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(ConvBN(f_in, spec))
                f_in = spec
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(f_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(x)
        x = F.avg_pool2d(x, 2).flatten(1)
        return self.fc(x)
