"""MNIST models in PyTorch: an MLP, pytorch/examples' CNN and a small fast CNN.

Read beside jaxpath/mnist/model.py: same classes, same submodule names, same order.
Inputs are NCHW float32 images [N, 1, 28, 28]; outputs are logits [N, 10].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """Flatten, then Linear-ReLU layers of widths `hidden`, then a 10-way Linear."""

    def __init__(self, hidden: Sequence[int] = (256, 128), num_classes: int = 10):
        super().__init__()
        in_features = 28 * 28
        for i, width in enumerate(hidden):
            # Named fc1, fc2, ... like the Flax submodules, so weights port by name.
            self.add_module(f"fc{i + 1}", nn.Linear(in_features, width))
            in_features = width
        self.num_hidden = len(hidden)
        self.head = nn.Linear(in_features, num_classes)
        # One input channel: (c, h, w) and (h, w, c) flatten orders agree, nothing to permute.
        self.flattened_inputs: dict[str, tuple[int, int, int]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, 10] of images [N, 1, 28, 28]."""
        x = torch.flatten(x, 1)
        for i in range(self.num_hidden):
            x = F.relu(getattr(self, f"fc{i + 1}")(x))
        return self.head(x)


class CNN(nn.Module):
    """pytorch/examples' MNIST net: conv32-conv64-maxpool-dropout-fc128-dropout-fc10."""

    def __init__(self, num_classes: int = 10, dropout: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)  # 28 -> 26 (no padding)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)  # 26 -> 24
        self.dropout1 = nn.Dropout(0.25 if dropout else 0.0)
        self.fc1 = nn.Linear(12 * 12 * 64, 128)
        self.dropout2 = nn.Dropout(0.5 if dropout else 0.0)
        self.fc2 = nn.Linear(128, num_classes)
        # fc1 reads a flattened (C, H, W) map; comparisons/weights.py permutes its rows.
        self.flattened_inputs = {"fc1": (64, 12, 12)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, 10] of images [N, 1, 28, 28]; dropout is active in train mode."""
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)  # 24 -> 12
        x = self.dropout1(x)
        x = torch.flatten(x, 1)  # PARITY: (c, h, w) order; Flax flattens (h, w, c).
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return self.fc2(x)


class FastCNN(nn.Module):
    """A compute-lean CNN for the speed recipe: two padded 3x3 convs with pooling, two Linear."""

    def __init__(
        self, num_classes: int = 10, dropout: bool = False, widths: Sequence[int] = (32, 64)
    ):
        super().__init__()
        c1, c2 = widths
        self.conv1 = nn.Conv2d(1, c1, 3, 1, padding=1)  # 28x28
        self.conv2 = nn.Conv2d(c1, c2, 3, 1, padding=1)  # 14x14
        self.dropout1 = nn.Dropout(0.25 if dropout else 0.0)
        self.fc1 = nn.Linear(7 * 7 * c2, 128)
        self.fc2 = nn.Linear(128, num_classes)
        self.flattened_inputs = {"fc1": (c2, 7, 7)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, 10] of images [N, 1, 28, 28]."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # 14x14
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # 7x7
        x = self.dropout1(x)
        x = torch.flatten(x, 1)  # PARITY: (c, h, w) flatten order, see CNN.
        x = F.relu(self.fc1(x))
        return self.fc2(x)


MODELS = {"mlp": MLP, "cnn": CNN, "fastcnn": FastCNN}


def create_model(config) -> nn.Module:
    """The model named by `config.model`, configured from `config`."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; known: {', '.join(MODELS)}")
    # PARITY: config.pool picks JAX's max-pool formulation (reshape + max or reduce_window);
    # torch has one, F.max_pool2d, which computes the same values and gradients as both.
    if config.model == "mlp":
        return MLP(hidden=tuple(config.hidden))
    if config.model == "fastcnn":
        return FastCNN(dropout=config.dropout, widths=tuple(config.conv_widths))
    return CNN(dropout=config.dropout)


def input_shape(batch_size: int) -> tuple[int, ...]:
    """Shape of a model input batch in this framework's layout (NCHW)."""
    return (batch_size, 1, 28, 28)


def dummy_input(batch_size: int = 1) -> torch.Tensor:
    """Zeros of the model's input shape, for initialisation and tracing."""
    return torch.zeros(input_shape(batch_size), dtype=torch.float32)
