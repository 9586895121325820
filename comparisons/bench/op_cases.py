"""The op cases of `roadmap bench`'s microbenchmarks: each op once per framework, same data.

Each case holds numpy inputs in JAX's layout, the JAX function, the torch function, the
layout change torch needs (NHWC -> NCHW, HWIO -> OIHW) and the op's analytic FLOP count.
comparisons/bench/ops.py times them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

SIZES = {
    "small": {
        "mm": 512,
        "conv": (64, 14, 32, 64),
        "conv_valid": (32, 26, 32, 64),
        "dw": (64, 28, 64),
        "pool": (32, 24, 64),
        "ln": (64, 128, 256),
        "sm": (32, 8, 128, 128),
        "lstm": (64, 128, 256),
        "attn": (8, 8, 128, 64),
        "dense": (32, 9216, 128),
        "adam": 1_199_882,
    },
    "tiny": {
        "mm": 64,
        "conv": (4, 8, 8, 16),
        "conv_valid": (2, 10, 4, 8),
        "dw": (4, 8, 8),
        "pool": (2, 8, 4),
        "ln": (4, 8, 32),
        "sm": (2, 2, 16, 16),
        "lstm": (4, 16, 32),
        "attn": (2, 2, 16, 8),
        "dense": (4, 32, 16),
        "adam": 1000,
    },
}
# The speedrun net's (airbench94's) heaviest layer at the bench's batch 256: group 2's first
# conv, 64 -> 256 channels at 15x15, its 2x2 max-pool, its head and the Lookahead-free update
# of its 1,972,792 parameters; the rest as "small". `--op-size speedrun`.
SIZES["speedrun"] = {
    **SIZES["small"],
    "conv": (256, 15, 64, 256),
    "conv_valid": (256, 17, 64, 256),
    "dw": (256, 15, 256),
    "pool": (256, 14, 256),
    "dense": (256, 256, 10),
    "adam": 1_972_792,
}
# Its 256 -> 256 convs on 7x7 maps (group 2's second, group 3's first): XLA's weight gradient
# here is a convolution with a 7x7 window over a 3x3 output. `--op-size speedrun7`.
SIZES["speedrun7"] = {
    **SIZES["speedrun"],
    "conv": (256, 7, 256, 256),
    "conv_valid": (256, 9, 256, 256),
    "dw": (256, 7, 256),
}
# ResNet-18's third stage at 32x32 inputs (torchvision's stem divides by 4): 256 -> 256
# channels on a 2x2 map, where XLA:CPU's convolution is many times slower than oneDNN's
# (jaxpath/transfer/model.py convolves such maps as patches @ kernel). `--op-size maps2x2`.
SIZES["maps2x2"] = {
    **SIZES["small"],
    "conv": (256, 2, 256, 256),
    "conv_valid": (256, 4, 256, 256),
    "dw": (256, 2, 256),
}
NHWC = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass
class OpCase:
    """One op at one size: numpy inputs, both implementations and its FLOP count."""

    shape: str
    flops: float
    formula: str
    inputs: list[np.ndarray]  # JAX layout
    jax_fn: Callable
    torch_fn: Callable
    to_torch: Callable[[list[np.ndarray]], list[np.ndarray]] = lambda xs: xs  # layout changes
    torch_grad: tuple[int, ...] = ()  # torch inputs that need requires_grad


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def _image_and_kernel(xs: list[np.ndarray]) -> list[np.ndarray]:
    """NHWC -> NCHW images and HWIO -> OIHW kernels for torch."""
    x, w = xs
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return [x, np.ascontiguousarray(w.transpose(3, 2, 0, 1))]


def _matmul(d):
    import jax.numpy as jnp
    import torch

    m = d["mm"]
    inputs = [_rand(m, m), _rand(m, m, seed=1)]
    return OpCase(f"{m}x{m} @ {m}x{m}", 2 * m**3, "2*M*N*K", inputs, jnp.matmul, torch.mm)


def _conv(d, grads: str, valid: bool = False):
    """3x3 conv, stride 1; `grads` is "" (forward), "w" (fwd+dW), "x" (fwd+dX) or "xw"."""
    import jax
    import torch
    import torch.nn.functional as F

    n, hw, cin, cout = d["conv_valid" if valid else "conv"]
    pad, out_hw = ("VALID", hw - 2) if valid else ("SAME", hw)
    conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=NHWC)
    fwd = 2 * n * out_hw * out_hw * cout * cin * 9
    inputs = [_rand(n, hw, hw, cin), _rand(3, 3, cin, cout, seed=1)]
    shape = f"x {n}x{hw}x{hw}x{cin}, w 3x3x{cin}x{cout}, {pad}"
    if not grads:
        torch_conv = lambda x, w: F.conv2d(x, w, padding=0 if valid else 1)
        formula = "2*N*Hout*Wout*Cout*Cin*9"
        return OpCase(shape, fwd, formula, inputs, conv, torch_conv, _image_and_kernel)
    wrt = {"xw": (0, 1), "x": (0,), "w": (1,)}[grads]
    # A random cotangent, as in a real backward pass (not the all-ones gradient of a sum).
    inputs.append(_rand(n, out_hw, out_hw, cout, seed=2))

    def jax_fn(x, w, g):
        out, vjp = jax.vjp(conv, x, w)  # the forward output is returned so it is computed
        return out, [vjp(g)[k] for k in wrt]

    def torch_fn(x, w, g):
        out = F.conv2d(x, w, padding=0 if valid else 1)
        return out, torch.autograd.grad(out, [(x, w)[k] for k in wrt], g)

    to_torch = lambda xs: [*_image_and_kernel(xs[:2]), _image_and_kernel([xs[2], xs[1]])[0]]
    factor = len(wrt) + 1
    formula = f"{factor} * forward (forward + {' + '.join('d' + 'XW'[k] for k in wrt)})"
    return OpCase(shape, factor * fwd, formula, inputs, jax_fn, torch_fn, to_torch, wrt)


def _depthwise(d):
    import jax
    import torch.nn.functional as F

    n, hw, c = d["dw"]
    jax_fn = lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=NHWC, feature_group_count=c
    )
    torch_fn = lambda x, w: F.conv2d(x, w, padding=1, groups=c)
    inputs = [_rand(n, hw, hw, c), _rand(3, 3, 1, c, seed=1)]
    shape, flops = f"x {n}x{hw}x{hw}x{c}, 3x3, groups {c}", 2 * n * hw * hw * c * 9
    return OpCase(shape, flops, "2*N*H*W*C*9", inputs, jax_fn, torch_fn, _image_and_kernel)


def _conv_transpose(d):
    import jax
    import torch.nn.functional as F

    n, hw, cout, cin = d["conv"]  # the upsampling mirror of the conv case: channels shrink
    jax_fn = lambda x, w: jax.lax.conv_transpose(x, w, (2, 2), "SAME", dimension_numbers=NHWC)
    # PARITY: padding 1 with a 4x4 kernel doubles H and W, like JAX's "SAME".
    torch_fn = lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1)
    # torch's transposed-conv weight is (Cin, Cout, kH, kW).
    to_torch = lambda xs: [_image_and_kernel(xs)[0], xs[1].transpose(2, 3, 0, 1).copy()]
    inputs = [_rand(n, hw, hw, cin), _rand(4, 4, cin, cout, seed=1)]
    shape = f"x {n}x{hw}x{hw}x{cin} -> {2 * hw}x{2 * hw}x{cout}, 4x4 stride 2"
    flops, formula = 2 * n * hw * hw * cin * cout * 16, "2*N*Hin*Win*Cin*Cout*4*4"
    return OpCase(shape, flops, formula, inputs, jax_fn, torch_fn, to_torch)


def _max_pool(d, backward: bool, formulation: str = "reshape"):
    """2x2 max pool, stride 2, in one JAX formulation; torch's F.max_pool2d either way."""
    import jax
    import torch
    import torch.nn.functional as F

    from jaxpath.common.pooling import max_pool

    n, hw, c = d["pool"]
    pool = lambda x: max_pool(x, (2, 2), (2, 2), formulation=formulation)
    to_nchw = lambda xs: [np.ascontiguousarray(x.transpose(0, 3, 1, 2)) for x in xs]
    label = "reshape + max" if formulation == "reshape" else "reduce_window"
    shape, inputs = f"x {n}x{hw}x{hw}x{c}, 2x2 stride 2, JAX {label}", [_rand(n, hw, hw, c)]
    if not backward:
        formula = "N*H*W*C (a comparison per input element)"
        torch_pool = lambda x: F.max_pool2d(x, 2)
        return OpCase(shape, n * hw * hw * c, formula, inputs, pool, torch_pool, to_nchw)
    inputs.append(_rand(n, hw // 2, hw // 2, c, seed=1))  # a random cotangent, as for conv

    def jax_fn(x, g):
        out, vjp = jax.vjp(pool, x)
        return out, vjp(g)

    def torch_fn(x, g):
        out = F.max_pool2d(x, 2)
        return out, torch.autograd.grad(out, x, g)

    formula = "2*N*H*W*C (forward, then one select per input element)"
    return OpCase(shape, 2 * n * hw * hw * c, formula, inputs, jax_fn, torch_fn, to_nchw, (0,))


def _dense(d):
    """fc1 of the MNIST CNN, forward + dX + dW + db, with a random cotangent."""
    import jax
    import torch

    n, fan_in, fan_out = d["dense"]
    inputs = [_rand(n, fan_in), _rand(fan_in, fan_out, seed=1), _rand(fan_out, seed=2)]
    inputs.append(_rand(n, fan_out, seed=3))

    def jax_fn(x, w, b, g):
        out, vjp = jax.vjp(lambda x, w, b: x @ w + b, x, w, b)
        return out, vjp(g)

    def torch_fn(x, w, b, g):
        out = torch.addmm(b, x, w)
        return out, torch.autograd.grad(out, (x, w, b), g)

    shape = f"x {n}x{fan_in} @ w {fan_in}x{fan_out} + b"
    formula, flops = "3 * 2*N*In*Out (forward, dX, dW)", 3 * 2 * n * fan_in * fan_out
    return OpCase(shape, flops, formula, inputs, jax_fn, torch_fn, torch_grad=(0, 1, 2))


def _adam(d):
    """One Adam update of a flat parameter vector: optax against torch.optim.Adam."""
    import optax
    import torch

    n = d["adam"]
    tx = optax.adam(1e-3)
    inputs = [_rand(n), _rand(n, seed=1)]

    def jax_fn(params, grads):
        state = tx.init(params)  # zeros, fused into the update: one pass over the vector
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    optimizers: dict = {}  # torch's Adam keeps its moments in the optimizer, across calls

    def torch_fn(params, grads):
        key = params.data_ptr()
        if key not in optimizers:
            param = torch.nn.Parameter(params)
            optimizers[key] = (param, torch.optim.Adam([param], lr=1e-3))
        param, opt = optimizers[key]
        param.grad = grads
        opt.step()
        return param

    formula = "~12 per parameter (two moments, bias corrections, sqrt, divide, update)"
    return OpCase(f"{n:,} parameters", 12 * n, formula, inputs, jax_fn, torch_fn)


def _normalize(x, axes, scale, bias):
    """(x - mean) / sqrt(var + eps) * scale + bias in JAX, statistics over `axes`."""
    import jax
    import jax.numpy as jnp

    mean = x.mean(axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axes, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias


def _batch_norm(d):
    import torch.nn.functional as F

    n, hw, c = d["dw"]
    jax_fn = lambda x, scale, bias: _normalize(x, (0, 1, 2), scale, bias)
    torch_fn = lambda x, s, b: F.batch_norm(x, None, None, s, b, training=True, eps=1e-5)
    to_torch = lambda xs: [np.ascontiguousarray(xs[0].transpose(0, 3, 1, 2)), *xs[1:]]
    inputs = [_rand(n, hw, hw, c), _rand(c, seed=1), _rand(c, seed=2)]
    formula = "8*N*H*W*C (mean 1, var 3, normalise + affine 4)"
    shape, flops = f"x {n}x{hw}x{hw}x{c}, training mode", 8 * n * hw * hw * c
    return OpCase(shape, flops, formula, inputs, jax_fn, torch_fn, to_torch)


def _layer_norm(d):
    import torch.nn.functional as F

    b, t, c = d["ln"]
    jax_fn = lambda x, scale, bias: _normalize(x, (-1,), scale, bias)
    torch_fn = lambda x, s, bias: F.layer_norm(x, (c,), s, bias, eps=1e-5)
    inputs = [_rand(b, t, c), _rand(c, seed=1), _rand(c, seed=2)]
    shape, flops = f"x {b}x{t}x{c}, over the last axis", 8 * b * t * c
    return OpCase(shape, flops, "8*B*T*C", inputs, jax_fn, torch_fn)


def _softmax(d):
    import jax
    import torch

    dims = d["sm"]
    shape, flops = "x " + "x".join(map(str, dims)) + ", last axis", 5 * int(np.prod(dims))
    formula = "5 per element (max, subtract, exp, sum, divide)"
    jax_fn, torch_fn = (lambda x: jax.nn.softmax(x, axis=-1)), (lambda x: torch.softmax(x, -1))
    return OpCase(shape, flops, formula, [_rand(*dims)], jax_fn, torch_fn)


def _lstm_cell(d):
    import jax
    import jax.numpy as jnp
    import torch

    b, i, h = d["lstm"]

    def jax_cell(x, hx, cx, wi, wh, bias):
        gates = x @ wi + hx @ wh + bias
        ig, fg, gg, og = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(fg) * cx + jax.nn.sigmoid(ig) * jnp.tanh(gg)
        return jax.nn.sigmoid(og) * jnp.tanh(c), c

    def torch_cell(x, hx, cx, wi, wh, bias):
        gates = x @ wi + hx @ wh + bias
        ig, fg, gg, og = gates.chunk(4, dim=-1)
        c = torch.sigmoid(fg) * cx + torch.sigmoid(ig) * torch.tanh(gg)
        return torch.sigmoid(og) * torch.tanh(c), c

    inputs = [_rand(b, i), _rand(b, h, seed=1), _rand(b, h, seed=2)]
    inputs += [_rand(i, 4 * h, seed=3), _rand(h, 4 * h, seed=4), _rand(4 * h, seed=5)]
    shape, flops = f"batch {b}, input {i}, hidden {h}, one step", 2 * b * (i + h) * 4 * h
    formula = "2*B*(I+H)*4H (gate matmuls; elementwise not counted)"
    return OpCase(shape, flops, formula, inputs, jax_cell, torch_cell)


def _attention(d):
    import jax
    import torch.nn.functional as F

    b, heads, s, dh = d["attn"]
    # jax.nn.dot_product_attention takes (B, S, heads, D); torch's SDPA (B, heads, S, D).
    to_torch = lambda xs: [np.ascontiguousarray(x.transpose(0, 2, 1, 3)) for x in xs]
    inputs = [_rand(b, s, heads, dh, seed=k) for k in range(3)]
    shape, flops = f"batch {b}, {heads} heads, seq {s}, head dim {dh}", 4 * b * heads * s * s * dh
    formula = "4*B*heads*S*S*D (QK^T and PV)"
    jax_fn, torch_fn = jax.nn.dot_product_attention, F.scaled_dot_product_attention
    return OpCase(shape, flops, formula, inputs, jax_fn, torch_fn, to_torch)


OPS: dict[str, Callable[[dict], OpCase]] = {
    "matmul": _matmul,
    "conv2d": lambda d: _conv(d, ""),
    "conv2d_fwd_dw": lambda d: _conv(d, "w"),
    "conv2d_fwd_bwd": lambda d: _conv(d, "xw"),
    "conv2d_valid": lambda d: _conv(d, "", valid=True),
    "conv2d_valid_fwd_dw": lambda d: _conv(d, "w", valid=True),
    "conv2d_valid_fwd_dx": lambda d: _conv(d, "x", valid=True),
    "depthwise_conv": _depthwise,
    "conv_transpose": _conv_transpose,
    "max_pool": lambda d: _max_pool(d, backward=False),
    "max_pool_fwd_bwd": lambda d: _max_pool(d, backward=True),
    "max_pool_reduce_window": lambda d: _max_pool(d, False, "reduce_window"),
    "max_pool_reduce_window_fwd_bwd": lambda d: _max_pool(d, True, "reduce_window"),
    "dense_fwd_bwd": _dense,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "softmax": _softmax,
    "lstm_cell": _lstm_cell,
    "attention": _attention,
    "adam_update": _adam,
}
