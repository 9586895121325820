"""Regression models in PyTorch: one Linear layer `fc`, the same for all three models.

Read beside jaxpath/regression/model.py: same classes, same submodule names, same order.
Inputs are standardised features [N, d]; outputs are predictions (linear) or logits
(logistic) [N], or logits [N, k] (softmax). The models differ only in their loss, which
lives in train.py (and, derived by hand, in shared_data/byhand/regression.py).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from shared_data.configs.regression import num_features, num_outputs


class Regression(nn.Module):
    """scores = x W^T + b through one Linear layer `fc`; one-output models drop the last axis."""

    def __init__(self, in_features: int, num_outputs: int = 1, squeeze: bool = True):
        super().__init__()
        # PARITY: torch stores the weight as [k, d], Flax's kernel as [d, k]; weights.py
        # transposes it when porting, and the L2 penalty (a sum of squares) is the same.
        self.fc = nn.Linear(in_features, num_outputs)
        self.squeeze = squeeze  # [N, 1] -> [N] for linear and logistic
        self.flattened_inputs: dict[str, tuple[int, int, int]] = {}  # no images, no permuting

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores [N] or [N, k] of features [N, d]."""
        scores = self.fc(x)
        return scores[:, 0] if self.squeeze else scores


LinearRegression = partial(Regression, num_outputs=1, squeeze=True)
LogisticRegression = partial(Regression, num_outputs=1, squeeze=True)
SoftmaxRegression = partial(Regression, squeeze=False)

MODELS = {
    "linear": LinearRegression,
    "logistic": LogisticRegression,
    "softmax": SoftmaxRegression,
}


def create_model(config) -> nn.Module:
    """The model named by `config.model`, sized for the config's dataset."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; known: {', '.join(MODELS)}")
    if config.model == "softmax":
        return SoftmaxRegression(num_features(config), num_outputs=num_outputs(config))
    return MODELS[config.model](num_features(config))


def input_shape(config, batch_size: int) -> tuple[int, ...]:
    """Shape of a model input batch: [N, features]."""
    return (batch_size, num_features(config))


def dummy_input(config, batch_size: int = 1) -> torch.Tensor:
    """Zeros of the model's input shape, for initialisation and tracing."""
    return torch.zeros(input_shape(config, batch_size), dtype=torch.float32)
