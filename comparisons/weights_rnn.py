"""Porting rules for torch's nn.LSTM and nn.GRU to jaxpath/common/rnn.py's TorchLSTM/TorchGRU.

torch packs each layer and direction's gates row-wise into weight_ih_l{k}[_reverse]
[G*H, in] and weight_hh_l{k}[_reverse] [G*H, H], with two biases b_ih and b_hh; the Flax
module holds one nn.RNN per layer and direction, named l{k}[_reverse], whose cell keeps one
Dense per gate: params[l{k}[_reverse]]["cell"][i<gate> | h<gate>].

PARITY: Flax's cells keep one bias where torch keeps two. LSTMCell has biases only on the
h-side Denses, so both torch biases of a gate land there summed. GRUCell computes
n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) exactly as torch does, so the n gate keeps
both biases apart (b_in on "in", b_hn on "hn"); only the r and z biases are summed (on
"ir"/"iz"). Flax -> torch takes b_hh from the reference layer and gives b_ih the rest.

A torch GRU whose bias_hh is a zero buffer rather than a parameter (one trainable bias per
gate, the sentiment LSTM's remedy for the two-bias trap) ports to
TorchGRU(recurrent_bias=False), whose cell has no b_hn.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from comparisons.weights_layers import Flat, FlaxView, Layer, PortingError, Rule

_LSTM_GATES = ("i", "f", "g", "o")  # torch's packed order
_GRU_GATES = ("r", "z", "n")


def _cells(layer: Layer) -> list[str]:
    """torch's name suffixes l{k}[_reverse], one per layer and direction, in torch's order."""
    module = layer.module
    if getattr(module, "proj_size", 0):
        raise PortingError(f"torch {layer.path}: no rule for LSTM with proj_size (Flax has none)")
    if not module.bias:
        raise PortingError(f"torch {layer.path}: no rule for bias=False (Flax cells keep biases)")
    directions = ("", "_reverse") if module.bidirectional else ("",)
    return [f"l{k}{d}" for k in range(module.num_layers) for d in directions]


def _split_bias(fused: np.ndarray, ref_ih: np.ndarray, ref_hh: np.ndarray) -> tuple:
    """torch's (b_ih, b_hh) from Flax's one bias, taking b_hh from the reference layer."""
    # Where the fused bias is unchanged since porting, the reference's split comes back bit for
    # bit; elsewhere (after training in Flax) b_ih + b_hh equals the fused bias to one rounding.
    b_ih = np.where(ref_ih + ref_hh == fused, ref_ih, fused - ref_hh)
    return b_ih.astype(fused.dtype), ref_hh


def _lstm_to_flax(layer: Layer) -> Flat:
    t, out = layer.tensors, {}
    for cell in _cells(layer):
        w_ih = np.split(t[f"weight_ih_{cell}"], 4)
        w_hh = np.split(t[f"weight_hh_{cell}"], 4)
        bias = np.split(t[f"bias_ih_{cell}"] + t[f"bias_hh_{cell}"], 4)
        for gate, wi, wh, b in zip(_LSTM_GATES, w_ih, w_hh, bias, strict=True):
            out["params", cell, "cell", f"i{gate}", "kernel"] = wi.T
            out["params", cell, "cell", f"h{gate}", "kernel"] = wh.T
            out["params", cell, "cell", f"h{gate}", "bias"] = b
    return out


def _lstm_to_torch(layer: Layer, flax: FlaxView) -> dict[str, np.ndarray]:
    t, out = layer.tensors, {}
    for cell in _cells(layer):
        p = ("params", cell, "cell")
        out[f"weight_ih_{cell}"] = np.concatenate(
            [flax[(*p, f"i{g}", "kernel")].T for g in _LSTM_GATES]
        )
        out[f"weight_hh_{cell}"] = np.concatenate(
            [flax[(*p, f"h{g}", "kernel")].T for g in _LSTM_GATES]
        )
        fused = np.concatenate([flax[(*p, f"h{g}", "bias")] for g in _LSTM_GATES])
        b_ih, b_hh = _split_bias(fused, t[f"bias_ih_{cell}"], t[f"bias_hh_{cell}"])
        out[f"bias_ih_{cell}"], out[f"bias_hh_{cell}"] = b_ih, b_hh
    return out


def _fixed_zero_bias_hh(layer: Layer, cell: str) -> bool:
    """True when the torch GRU keeps bias_hh as a zero buffer, not a parameter.

    Its Flax twin is TorchGRU(recurrent_bias=False) (SingleBiasGRUCell), which has no b_hn:
    one trainable bias per gate on both sides, as for the LSTM (module docstring).
    """
    name = f"bias_hh_{cell}"
    if name in dict(layer.module.named_parameters(recurse=False)):
        return False
    if np.any(layer.tensors[name]):
        raise PortingError(f"{name} is a buffer but not zero: Flax's single-bias cell has no b_hh")
    return True


def _gru_to_flax(layer: Layer) -> Flat:
    t, out = layer.tensors, {}
    for cell in _cells(layer):
        p = ("params", cell, "cell")
        single_bias = _fixed_zero_bias_hh(layer, cell)
        w_ih = np.split(t[f"weight_ih_{cell}"], 3)
        w_hh = np.split(t[f"weight_hh_{cell}"], 3)
        b_ih = np.split(t[f"bias_ih_{cell}"], 3)
        b_hh = np.split(t[f"bias_hh_{cell}"], 3)
        for gate, wi, wh, bi, bh in zip(_GRU_GATES, w_ih, w_hh, b_ih, b_hh, strict=True):
            out[(*p, f"i{gate}", "kernel")] = wi.T
            out[(*p, f"h{gate}", "kernel")] = wh.T
            if gate == "n":  # r multiplies (W_hn h + b_hn), so b_hn stays on the h side
                out[(*p, "in", "bias")] = bi
                if not single_bias:
                    out[(*p, "hn", "bias")] = bh
            else:
                out[(*p, f"i{gate}", "bias")] = bi + bh
    return out


def _gru_to_torch(layer: Layer, flax: FlaxView) -> dict[str, np.ndarray]:
    t, out = layer.tensors, {}
    for cell in _cells(layer):
        p = ("params", cell, "cell")
        out[f"weight_ih_{cell}"] = np.concatenate(
            [flax[(*p, f"i{g}", "kernel")].T for g in _GRU_GATES]
        )
        out[f"weight_hh_{cell}"] = np.concatenate(
            [flax[(*p, f"h{g}", "kernel")].T for g in _GRU_GATES]
        )
        ref_ih = np.split(t[f"bias_ih_{cell}"], 3)
        ref_hh = np.split(t[f"bias_hh_{cell}"], 3)
        r_ih, r_hh = _split_bias(flax[(*p, "ir", "bias")], ref_ih[0], ref_hh[0])
        z_ih, z_hh = _split_bias(flax[(*p, "iz", "bias")], ref_ih[1], ref_hh[1])
        out[f"bias_ih_{cell}"] = np.concatenate([r_ih, z_ih, flax[(*p, "in", "bias")]])
        b_hn = ref_hh[2] if _fixed_zero_bias_hh(layer, cell) else flax[(*p, "hn", "bias")]
        out[f"bias_hh_{cell}"] = np.concatenate([r_hh, z_hh, b_hn])
    return out


RNN_RULES: dict[type, Rule] = {
    nn.LSTM: Rule(_lstm_to_flax, _lstm_to_torch, "jaxpath.common.rnn.TorchLSTM"),
    nn.GRU: Rule(_gru_to_flax, _gru_to_torch, "jaxpath.common.rnn.TorchGRU"),
}
