"""LeNet-300-100: fully connected 784-300-100-10 with ReLU (OpenLTH's mnist_lenet_300_100).

Module names follow OpenLTH (fc_layers.N, fc) so its checkpoints load directly.
"""

from __future__ import annotations

import torch
from torch import nn


class LeNet(nn.Module):
    linear_stem = "fc_layers.0"

    def __init__(self, hidden: list[int], num_classes: int = 10, input_size: int = 784):
        super().__init__()
        sizes = [input_size, *hidden]
        self.fc_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.fc = nn.Linear(sizes[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.fc_layers:
            x = torch.relu(layer(x))
        return self.fc(x)
