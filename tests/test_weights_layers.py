"""Every porting rule against the torch layer itself: same outputs, exact round trip, errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from flax import linen as nn
from torch import nn as tnn

from comparisons.weights import PortingError, flax_to_torch, torch_to_flax
from jaxpath.common.rnn import TorchGRU, TorchLSTM

TOL = 1e-5


def _x(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _randomize(layer: tnn.Module) -> tnn.Module:
    """Overwrite torch's init (ones, zeros, zero biases) so every tensor matters; eval mode."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in layer.state_dict().items():
            if tensor.is_floating_point():
                low, high = (0.5, 1.5) if name.endswith("running_var") else (-1.0, 1.0)
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return layer.eval()


def _assert_round_trip(torch_layer: tnn.Module, variables) -> None:
    state = torch_layer.state_dict()
    back = flax_to_torch(variables, torch_layer)
    assert list(back) == list(state)
    for key, value in state.items():
        np.testing.assert_array_equal(back[key].numpy(), value.numpy(), err_msg=key)


def _transpose_pads(k: int, p: int, q: int = 0) -> tuple[int, int]:
    """Flax ConvTranspose padding for torch's padding p and output_padding q (weights.py)."""
    return (k - 1 - p, k - 1 - p + q)


class TorchHead(tnn.Module):
    """A Linear after torch's (C, H, W) flatten, listed in flattened_inputs."""

    def __init__(self):
        super().__init__()
        self.fc = tnn.Linear(4 * 2 * 3, 5)
        self.flattened_inputs = {"fc": (4, 2, 3)}

    def forward(self, x):
        return self.fc(torch.flatten(x, 1))


class FlaxHead(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(5, name="fc")(x.reshape(x.shape[0], -1))


BN = dict(use_running_average=True, momentum=0.9, epsilon=1e-5)  # torch's defaults
# name: (torch layer, Flax module, input in Flax's layout, channels last in Flax)
CASES = {
    "linear": lambda: (tnn.Linear(6, 5), nn.Dense(5), _x(4, 6), False),
    "linear_chw_flatten": lambda: (TorchHead(), FlaxHead(), _x(2, 2, 3, 4), True),
    "conv1d_dilated": lambda: (
        tnn.Conv1d(3, 4, 3, padding=2, dilation=2),
        nn.Conv(4, (3,), padding=((2, 2),), kernel_dilation=2),
        _x(2, 9, 3),
        True,
    ),
    "conv2d": lambda: (
        tnn.Conv2d(3, 4, (3, 2), stride=2, padding=1),
        nn.Conv(4, (3, 2), strides=2, padding=((1, 1), (1, 1))),
        _x(2, 9, 8, 3),
        True,
    ),
    "conv_transpose2d": lambda: (
        tnn.ConvTranspose2d(3, 4, (3, 4), stride=2, padding=1, output_padding=(1, 0)),
        nn.ConvTranspose(
            4,
            (3, 4),
            (2, 2),
            padding=(_transpose_pads(3, 1, 1), _transpose_pads(4, 1, 0)),
            transpose_kernel=True,
        ),
        _x(2, 5, 6, 3),
        True,
    ),
    "batchnorm1d": lambda: (tnn.BatchNorm1d(4), nn.BatchNorm(**BN), _x(3, 4), False),
    "batchnorm2d": lambda: (tnn.BatchNorm2d(4), nn.BatchNorm(**BN), _x(2, 5, 5, 4), True),
    "layernorm": lambda: (tnn.LayerNorm(6), nn.LayerNorm(epsilon=1e-5), _x(3, 6), False),
    "groupnorm": lambda: (
        tnn.GroupNorm(2, 4),
        nn.GroupNorm(num_groups=2, epsilon=1e-5),
        _x(2, 5, 5, 4),
        True,
    ),
    "embedding": lambda: (
        tnn.Embedding(10, 4),
        nn.Embed(10, 4),
        np.arange(15).reshape(3, 5) % 10,
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_matches_torch_layer(case):
    torch.manual_seed(0)
    torch_layer, flax_layer, x, channels_last = CASES[case]()
    _randomize(torch_layer)
    variables = torch_to_flax(torch_layer, flax_layer.init(jax.random.key(0), x))
    ours = np.asarray(flax_layer.apply(variables, x))
    with torch.no_grad():
        theirs = torch_layer(torch.from_numpy(np.moveaxis(x, -1, 1) if channels_last else x))
    theirs = np.moveaxis(theirs.numpy(), 1, -1) if channels_last else theirs.numpy()
    assert ours.shape == theirs.shape
    assert np.max(np.abs(ours - theirs)) <= TOL
    _assert_round_trip(torch_layer, variables)


@pytest.mark.parametrize("kv_dims", [(8, 8), (5, 6)])  # packed in_proj_weight; q/k/v_proj_weight
def test_multihead_attention_with_key_padding_mask(kv_dims):
    kdim, vdim = kv_dims
    torch_mha = _randomize(tnn.MultiheadAttention(8, 2, batch_first=True, kdim=kdim, vdim=vdim))
    flax_mha = nn.MultiHeadDotProductAttention(num_heads=2)
    q, k, v = _x(2, 3, 8), _x(2, 4, kdim, seed=2), _x(2, 4, vdim, seed=3)
    ignored = np.array([[False] * 4, [False, False, True, True]])  # torch: True = ignore
    variables = torch_to_flax(torch_mha, flax_mha.init(jax.random.key(0), q, k, v))
    # PARITY: Flax's mask is True where a key is attended, per [batch, heads, query, key].
    ours = np.asarray(flax_mha.apply(variables, q, k, v, mask=~ignored[:, None, None, :]))
    with torch.no_grad():
        theirs, _ = torch_mha(
            *map(torch.from_numpy, (q, k, v)),
            key_padding_mask=torch.from_numpy(ignored),
            need_weights=False,
        )
    assert np.max(np.abs(ours - theirs.numpy())) <= TOL
    _assert_round_trip(torch_mha, variables)


@pytest.mark.parametrize("torch_cls,flax_cls", [(tnn.LSTM, TorchLSTM), (tnn.GRU, TorchGRU)])
def test_recurrent_two_layers_bidirectional_variable_lengths(torch_cls, flax_cls):
    torch_rnn = _randomize(torch_cls(5, 6, num_layers=2, bidirectional=True, batch_first=True))
    flax_rnn = flax_cls(6, num_layers=2, bidirectional=True, batch_first=True)
    x, lengths = _x(3, 7, 5), np.array([7, 4, 1])
    variables = torch_to_flax(torch_rnn, flax_rnn.init(jax.random.key(0), x, lengths))
    ours, ours_final = flax_rnn.apply(variables, x, lengths)
    packed = tnn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
    )
    with torch.no_grad():
        theirs, theirs_final = torch_rnn(packed)
    theirs, _ = tnn.utils.rnn.pad_packed_sequence(theirs, batch_first=True, total_length=7)
    valid = np.arange(7)[None, :] < lengths[:, None]
    assert np.max(np.abs(np.asarray(ours)[valid] - theirs.numpy()[valid])) <= TOL
    for a, b in zip(jax.tree.leaves(ours_final), jax.tree.leaves(theirs_final), strict=True):
        assert np.max(np.abs(np.asarray(a) - b.numpy())) <= TOL
    # Padding never changes the result: garbage past each length gives identical outputs.
    noisy = np.where(valid[..., None], x, 1e3 * _x(3, 7, 5, seed=9))
    again, again_final = flax_rnn.apply(variables, noisy, lengths)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(ours))
    jax.tree.map(np.testing.assert_array_equal, again_final, ours_final)
    _assert_round_trip(torch_rnn, variables)


def test_lstm_time_major_with_initial_state():
    torch_rnn = _randomize(tnn.LSTM(4, 3))
    flax_rnn = TorchLSTM(3)
    x, h0, c0 = _x(6, 2, 4), _x(1, 2, 3, seed=4), _x(1, 2, 3, seed=5)
    variables = torch_to_flax(torch_rnn, flax_rnn.init(jax.random.key(0), x))
    ours, (h, c) = flax_rnn.apply(variables, x, initial_state=(h0, c0))
    with torch.no_grad():
        theirs, (th, tc) = torch_rnn(
            torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0))
        )
    for a, b in ((ours, theirs), (h, th), (c, tc)):
        assert np.max(np.abs(np.asarray(a) - b.numpy())) <= TOL


def test_errors_name_the_layer():
    flax_vars = FlaxHead().init(jax.random.key(0), _x(2, 2, 3, 4))
    wide = nn.Dense(6, name="fc")
    with pytest.raises(PortingError, match=r"shape mismatch for torch fc \(Linear\).*\(24, 5\)"):
        torch_to_flax(
            TorchHead(), {"params": {"fc": wide.init(jax.random.key(0), _x(1, 24))["params"]}}
        )
    with pytest.raises(PortingError, match=r"no porting rule for torch layer 1 \(PReLU"):
        torch_to_flax(tnn.Sequential(tnn.ReLU(), tnn.PReLU()), {"params": {}})
    extra = {"params": {**flax_vars["params"], "unused": {"kernel": np.zeros(3)}}}
    with pytest.raises(PortingError, match="no torch counterpart.*unused/kernel"):
        flax_to_torch(extra, TorchHead())
    deconv = nn.ConvTranspose(4, (3, 3))  # transpose_kernel=False: kernel is [k, k, I, O]
    with pytest.raises(PortingError, match="transpose_kernel=True"):
        torch_to_flax(tnn.ConvTranspose2d(3, 4, 3), deconv.init(jax.random.key(0), _x(1, 5, 5, 3)))
