"""Regression models in Flax Linen: one Dense layer `fc`, the same for all three models.

Read beside torchpath/regression/model.py: same classes, same submodule names, same order.
Inputs are standardised features [N, d]; outputs are predictions (linear) or logits
(logistic) [N], or logits [N, k] (softmax). The models differ only in their loss, which
lives in train.py (and, derived by hand, in shared_data/byhand/regression.py).
"""

from __future__ import annotations

from functools import partial

import jax.numpy as jnp
from flax import linen as nn

from jaxpath.common.init import TorchDense
from shared_data.configs.regression import num_features, num_outputs


class Regression(nn.Module):
    """scores = x W + b through one Dense layer `fc`; one-output models drop the last axis."""

    in_features: int
    num_outputs: int = 1
    squeeze: bool = True  # [N, 1] -> [N] for linear and logistic

    @nn.compact
    def __call__(self, x, train: bool = False):
        scores = TorchDense(self.num_outputs, self.in_features, name="fc")(x)
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


def dummy_input(config, batch_size: int = 1):
    """Zeros of the model's input shape, for initialisation and tracing."""
    return jnp.zeros(input_shape(config, batch_size), jnp.float32)
