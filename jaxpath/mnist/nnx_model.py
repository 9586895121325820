"""pytorch/examples' MNIST CNN once more, as Flax NNX modules: the third style of docs/STYLES.md.

JAX-only, with no torchpath twin: this file exists to be read beside jaxpath/mnist/model.py
(Flax Linen, the same network) and torchpath/mnist/model.py (PyTorch). NNX modules are
Python objects that own their parameters, as torch's are; Linen modules are descriptions
that `init` turns into a separate params pytree. The layers, shapes, initialisation rules
(torch's, jaxpath/common/init.py) and dropout placement are the Linen CNN's, and the
submodule names too, so a Linen params pytree loads into this model unchanged
(`load_linen_params`) and the two compute the same function (tests/test_styles.py).
"""

from __future__ import annotations

import jax
from flax import nnx

from jaxpath.common.init import torch_bias_init, torch_kernel_init
from jaxpath.common.pooling import max_pool


def torch_conv(in_features: int, features: int, kernel_size: int, *, rngs: nnx.Rngs) -> nnx.Conv:
    """nnx.Conv initialised and padded like torch.nn.Conv2d(in, out, k) (no padding)."""
    # PARITY: NNX, like Linen, pads "SAME" by default; torch's padding=0 is VALID.
    return nnx.Conv(
        in_features,
        features,
        (kernel_size, kernel_size),
        padding=[(0, 0), (0, 0)],
        kernel_init=torch_kernel_init,
        bias_init=torch_bias_init(in_features * kernel_size * kernel_size),
        rngs=rngs,
    )


def torch_linear(in_features: int, features: int, *, rngs: nnx.Rngs) -> nnx.Linear:
    """nnx.Linear initialised like torch.nn.Linear(in_features, features)."""
    return nnx.Linear(
        in_features,
        features,
        kernel_init=torch_kernel_init,
        bias_init=torch_bias_init(in_features),
        rngs=rngs,
    )


class CNN(nnx.Module):
    """pytorch/examples' MNIST net: conv32-conv64-maxpool-dropout-fc128-dropout-fc10."""

    def __init__(
        self,
        num_classes: int = 10,
        dropout: bool = True,
        pool: str = "reshape",
        *,
        rngs: nnx.Rngs,
    ):
        # NNX, like torch, builds every layer (and draws its weights) in the constructor;
        # the in-features that Linen infers at `init` are spelled out, as torch spells them.
        self.conv1 = torch_conv(1, 32, 3, rngs=rngs)  # 28 -> 26 (no padding)
        self.conv2 = torch_conv(32, 64, 3, rngs=rngs)  # 26 -> 24
        self.dropout1 = nnx.Dropout(0.25 if dropout else 0.0)
        self.fc1 = torch_linear(12 * 12 * 64, 128, rngs=rngs)
        self.dropout2 = nnx.Dropout(0.5 if dropout else 0.0)
        self.fc2 = torch_linear(128, num_classes, rngs=rngs)
        self.pool = pool  # a plain attribute: static, part of the graphdef

    def __call__(self, x: jax.Array, train: bool = False, rng: jax.Array | None = None):
        # PARITY: NNX can keep an RNG stream inside the module (nnx.Rngs, advanced on every
        # call: hidden state, like torch's global generator). Here the caller passes the
        # step's key, as Linen's `rngs={"dropout": rng}`, so a step stays a function of
        # (seed, step) and resume is exact. The two dropouts split it; Linen derives its
        # per-layer keys differently, so with dropout on the masks (not the function) differ.
        keys = jax.random.split(rng) if train and rng is not None else (None, None)
        x = nnx.relu(self.conv1(x))
        x = nnx.relu(self.conv2(x))
        x = max_pool(x, (2, 2), strides=(2, 2), formulation=self.pool)  # 24 -> 12
        x = self.dropout1(x, deterministic=not train, rngs=keys[0])
        x = x.reshape((x.shape[0], -1))  # PARITY: (h, w, c) flatten order, as the Linen CNN
        x = nnx.relu(self.fc1(x))
        x = self.dropout2(x, deterministic=not train, rngs=keys[1])
        return self.fc2(x)


MODELS = {"cnn": CNN}


def create_model(config) -> CNN:
    """The NNX model named by `config.model` (only the CNN has one), weights from `config.seed`."""
    if config.model not in MODELS:
        raise ValueError(f"no NNX model {config.model!r}; known: {', '.join(MODELS)}")
    pool = getattr(config, "pool", "reshape")
    return CNN(dropout=config.dropout, pool=pool, rngs=nnx.Rngs(params=config.seed))


def linen_params(model: nnx.Module) -> dict:
    """The model's parameters as a Linen params pytree ({"conv1": {"kernel", "bias"}, ...})."""
    # NNX's Conv and Linear store kernels as Linen's do (HWIO, [in, out]): only the
    # containers differ, so the converter is a change of container, not of layout.
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def load_linen_params(model: nnx.Module, params) -> None:
    """Overwrite the model's parameters, in place, with a Linen params pytree of equal shapes."""
    state = nnx.state(model, nnx.Param)
    expected, given = _named(nnx.to_pure_dict(state)), _named(params)
    if expected.keys() != given.keys():
        raise ValueError(f"Linen params {sorted(given)} != the NNX model's {sorted(expected)}")
    for name, want in expected.items():
        if want.shape != given[name].shape:
            raise ValueError(f"{name}: Linen shape {given[name].shape} != NNX {want.shape}")
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)


def _named(tree) -> dict:
    """{keypath: leaf} of a nested mapping, whatever its container types."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}
