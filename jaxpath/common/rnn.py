"""torch.nn.LSTM and torch.nn.GRU in Flax: multi-layer, bidirectional, with sequence lengths.

Flax has cells (nn.OptimizedLSTMCell, nn.GRUCell) and nn.RNN to scan one over time, but no
stacked or bidirectional layer with torch's semantics. `TorchLSTM` / `TorchGRU` take torch's
arguments and return what torch returns:

    outputs, (h_n, c_n) = TorchLSTM(hidden_size, num_layers, bidirectional, batch_first)(x)
    outputs, h_n = TorchGRU(...)(x, seq_lengths)

outputs: [B, T, D*H] (batch_first) or [T, B, D*H]; h_n, c_n: [num_layers*D, B, H], ordered
(layer, direction) as in torch. Each layer and direction is one nn.RNN named l{k} or
l{k}_reverse, after torch's weight_ih_l{k}[_reverse], so comparisons/weights_rnn.py maps
names one to one: params["l0_reverse"]["cell"]["ii"]["kernel"] is the input kernel of the
first layer's backward i gate.

No torchpath twin: torch's own nn.LSTM and nn.GRU are the reference these layers copy.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from jaxpath.common.init import torch_bias_init


class _TorchRNN(nn.Module):
    """A stack of (bidirectional) nn.RNN layers with torch.nn.RNNBase's arguments."""

    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False  # PARITY: torch's default is time-major [T, B, F]
    dropout: float = 0.0  # on every layer's output but the last, as torch

    @nn.compact
    def __call__(
        self,
        inputs: jnp.ndarray,
        seq_lengths: jnp.ndarray | None = None,
        initial_state: Any = None,
        deterministic: bool = True,
    ):
        """(outputs, final state) as torch returns them; padding past seq_lengths is ignored."""
        x = inputs if self.batch_first else jnp.swapaxes(inputs, 0, 1)
        valid = None
        if seq_lengths is not None:
            valid = (jnp.arange(x.shape[1])[None, :] < seq_lengths[:, None])[..., None]
        directions = ("", "_reverse") if self.bidirectional else ("",)
        finals = []
        for k in range(self.num_layers):
            outputs = []
            for d, suffix in enumerate(directions):
                index = k * len(directions) + d
                rnn = nn.RNN(
                    self._cell(),
                    return_carry=True,
                    reverse=bool(suffix),
                    keep_order=True,  # backward outputs come back in time order, as torch's
                    name=f"l{k}{suffix}",
                )
                carry0 = None if initial_state is None else self._carry(initial_state, index)
                carry, y = rnn(x, initial_carry=carry0, seq_lengths=seq_lengths)
                outputs.append(y)
                finals.append(carry)
            x = jnp.concatenate(outputs, axis=-1)
            if valid is not None:
                # PARITY: torch's pad_packed_sequence fills padding with zeros; nn.RNN leaves
                # whatever the scan computed there.
                x = jnp.where(valid, x, 0.0)
            if self.dropout and k < self.num_layers - 1:
                x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
        outputs = x if self.batch_first else jnp.swapaxes(x, 0, 1)
        return outputs, self._final(finals)

    def _init(self) -> dict[str, Any]:
        # PARITY: torch draws every LSTM/GRU weight and bias from U(-1/sqrt(H), 1/sqrt(H));
        # Flax's defaults are lecun_normal / orthogonal kernels and zero biases. Flax's one
        # fused bias per gate is drawn from that U too, not from the sum of two draws.
        uniform = torch_bias_init(self.hidden_size)
        return dict(kernel_init=uniform, recurrent_kernel_init=uniform, bias_init=uniform)


class TorchLSTM(_TorchRNN):
    """torch.nn.LSTM: returns (outputs, (h_n, c_n)); initial_state is torch's (h_0, c_0)."""

    @nn.nowrap
    def _cell(self) -> nn.RNNCellBase:
        # parent=None: nn.RNN adopts the cell as its submodule "cell".
        return nn.OptimizedLSTMCell(self.hidden_size, parent=None, **self._init())

    @nn.nowrap
    def _carry(self, initial_state: Sequence[jnp.ndarray], index: int):
        h0, c0 = initial_state
        return c0[index], h0[index]  # Flax's LSTM carry is (c, h)

    @nn.nowrap
    def _final(self, carries: list):
        return jnp.stack([h for _, h in carries]), jnp.stack([c for c, _ in carries])


class SingleBiasGRUCell(nn.GRUCell):
    """Flax's GRUCell without b_hn: n = tanh(W_in x + b_in + r * (W_hn h)), one bias a gate.

    The twin of a torch nn.GRU whose bias_hh is a zero buffer (torchpath/seq2seq/model.py's
    `single_bias_gru`): both sides then hold one trainable bias per gate, so an optimizer
    step moves the same parameters (see comparisons/weights_rnn.py).
    """

    @nn.compact
    def __call__(self, carry, inputs):
        h = carry
        dense = functools.partial(
            nn.Dense, carry.shape[-1], dtype=self.dtype, param_dtype=self.param_dtype
        )
        dense_i = functools.partial(dense, kernel_init=self.kernel_init, bias_init=self.bias_init)
        dense_h = functools.partial(dense, use_bias=False, kernel_init=self.recurrent_kernel_init)
        r = self.gate_fn(dense_i(name="ir")(inputs) + dense_h(name="hr")(h))
        z = self.gate_fn(dense_i(name="iz")(inputs) + dense_h(name="hz")(h))
        n = self.activation_fn(dense_i(name="in")(inputs) + r * dense_h(name="hn")(h))
        new_h = (1.0 - z) * n + z * h
        return new_h, new_h


class TorchGRU(_TorchRNN):
    """torch.nn.GRU: returns (outputs, h_n); initial_state is torch's h_0.

    recurrent_bias=False drops b_hn (SingleBiasGRUCell), for a torch GRU without b_hh.
    """

    recurrent_bias: bool = True

    @nn.nowrap
    def _cell(self) -> nn.RNNCellBase:
        # Flax's GRUCell computes torch's n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) with
        # b_hn inside the reset product, so only the r and z biases are fused when porting.
        cell = nn.GRUCell if self.recurrent_bias else SingleBiasGRUCell
        return cell(self.hidden_size, parent=None, **self._init())

    @nn.nowrap
    def _carry(self, initial_state: jnp.ndarray, index: int):
        return initial_state[index]

    @nn.nowrap
    def _final(self, carries: list):
        return jnp.stack(carries)
