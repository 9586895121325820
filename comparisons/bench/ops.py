"""Per-op microbenchmarks: jax.jit against torch eager (and torch.compile, opt-in).

Each op is written once per framework in that framework's usual layout (NHWC/HWIO for JAX,
NCHW/OIHW for torch) on the same numpy data, with an analytic FLOP formula beside it. The
conv cases separate forward, forward+dW (XLA:CPU's weak spot per PERF-NOTES) and
forward+dX+dW, on a 14x14 SAME layer and a 26x26 VALID one. Shapes are small enough that
each measurement takes about a second on 2 cores. GFLOP/s are analytic FLOPs over time, so a
library that does fewer multiplications (Winograd convolutions) can exceed the matmul peak.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from comparisons.bench.peak import jax_sync, summarize_ms, time_calls, torch_sync_for

# Dimensions of every op; "tiny" is for tests. conv: (N, H=W, Cin, Cout), the PERF-NOTES
# layer (SAME); conv_valid: the same for the MNIST CNN's conv2 (VALID); dw: (N, H=W, C);
# pool: (N, H=W, C), the CNN's pool; ln: (B, T, C); lstm: (B, I, H); attn: (B, heads, S, head dim).
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
    },
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
    """3x3 conv, stride 1; `grads` is "" (forward), "w" (fwd+dW) or "xw" (fwd+dX+dW)."""
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
    wrt = (0, 1) if grads == "xw" else (1,)
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


def _max_pool(d, backward: bool):
    """2x2 max pool, stride 2; the backward is XLA's select-and-scatter."""
    import jax
    import jax.numpy as jnp
    import torch
    import torch.nn.functional as F

    n, hw, c = d["pool"]
    window = (1, 2, 2, 1)
    pool = lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, window, "VALID")
    to_nchw = lambda xs: [np.ascontiguousarray(x.transpose(0, 3, 1, 2)) for x in xs]
    shape, inputs = f"x {n}x{hw}x{hw}x{c}, 2x2 stride 2", [_rand(n, hw, hw, c)]
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

    formula = "2*N*H*W*C (forward, then one scatter per input element)"
    return OpCase(shape, 2 * n * hw * hw * c, formula, inputs, jax_fn, torch_fn, to_nchw, (0,))


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
    "depthwise_conv": _depthwise,
    "conv_transpose": _conv_transpose,
    "max_pool": lambda d: _max_pool(d, backward=False),
    "max_pool_fwd_bwd": lambda d: _max_pool(d, backward=True),
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "softmax": _softmax,
    "lstm_cell": _lstm_cell,
    "attention": _attention,
}
OP_MODES = ("jax", "torch_eager", "torch_compile")
OP_MODE_LABELS = {"jax": "jax.jit", "torch_eager": "torch", "torch_compile": "torch.compile"}


def _calls(case: OpCase, mode: str, device: str) -> tuple[Callable[[], Any], Callable]:
    """A zero-argument call of `case` in `mode` on `device`, and its sync."""
    if mode == "jax":
        import jax

        dev = jax.devices("gpu" if device == "cuda" else "cpu")[0]
        args = [jax.device_put(x, dev) for x in case.inputs]
        fn = jax.jit(case.jax_fn)
        return (lambda: fn(*args)), jax_sync
    import torch

    args = [torch.from_numpy(x).to(device) for x in case.to_torch(case.inputs)]
    for k in case.torch_grad:
        args[k].requires_grad_(True)
    fn = case.torch_fn
    if mode == "torch_compile":
        torch._dynamo.reset()
        fn = torch.compile(fn, dynamic=False)
    return (lambda: fn(*args)), torch_sync_for(device)


def _time_op(call, sync, steps: int, budget_s: float) -> dict[str, float]:
    """Warm up, then time as many calls as fit in `budget_s` (at least 3, at most `steps`)."""
    time_calls(call, sync, 2)  # the first call compiles; the second settles caches
    probe = time_calls(call, sync, 1)[0]
    n = int(min(steps, max(3, budget_s / max(probe, 1e-9))))
    return summarize_ms(time_calls(call, sync, n))


def bench_ops(
    ops: list[str] | None = None,
    steps: int = 20,
    compile: bool = False,
    device: str = "cpu",
    progress: bool = True,
    *,
    size: str = "small",
    budget_s: float = 1.0,
    peaks: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """One row per op: ms, GFLOP/s and JAX/torch time ratio of each mode; failures named."""
    names = list(OPS) if ops is None else list(ops)
    unknown = [o for o in names if o not in OPS]
    if unknown:
        raise ValueError(f"unknown ops {unknown}; known: {', '.join(OPS)}")
    modes = OP_MODES if compile else OP_MODES[:2]
    rows = []
    bar = tqdm(total=len(names) * len(modes), disable=not progress, desc="ops")
    for name in names:
        case = OPS[name](SIZES[size])
        row: dict[str, Any] = dict(op=name, shape=case.shape, flops=float(case.flops))
        row.update(flops_formula=case.formula, errors={})
        for mode in modes:
            bar.set_description(f"op {name} {mode}")
            try:
                stats = _time_op(*_calls(case, mode, device), steps, budget_s)
            except Exception as err:  # named in the row; the other ops and modes still run
                msg = (str(err).strip().splitlines() or [""])[0][:300]
                row["errors"][mode] = f"{name} {mode} failed: {type(err).__name__}: {msg}"
                stats = {"median_ms": None, "p10_ms": None, "p90_ms": None}
            ms = stats["median_ms"]
            gflops = case.flops / ms / 1e6 if ms else None
            peak = (peaks or {}).get("jax" if mode == "jax" else "torch")
            row.update({f"{mode}_{k}": v for k, v in stats.items()})
            row[f"{mode}_gflops"] = gflops
            row[f"{mode}_peak_fraction"] = gflops / peak if gflops and peak else None
            bar.update()
        for mode in modes[1:]:
            ok = row["jax_median_ms"] and row[f"{mode}_median_ms"]
            row[f"jax_over_{mode}"] = (
                row["jax_median_ms"] / row[f"{mode}_median_ms"] if ok else None
            )
        rows.append(row)
    bar.close()
    return rows


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def ops_markdown(rows: list[dict[str, Any]]) -> str:
    """The op table: ms and GFLOP/s per mode, and JAX/torch time ratios (above 1: JAX slower)."""
    modes = [m for m in OP_MODES if any(f"{m}_median_ms" in r for r in rows)]
    labels = [OP_MODE_LABELS[m] for m in modes]
    head = ["op", "shape", "MFLOP"] + [f"{m} ms" for m in labels]
    head += [f"{m} GFLOP/s" for m in labels] + [f"JAX/{m}" for m in labels[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["op"], r["shape"], f"{r['flops'] / 1e6:,.1f}"]
        cells += [_fmt(r[f"{m}_median_ms"], ".2f") for m in modes]
        cells += [_fmt(r[f"{m}_gflops"], ".1f") for m in modes]
        cells += [_fmt(r[f"jax_over_{m}"], ".2f") for m in modes[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    formulas = "; ".join(f"{r['op']}: {r['flops_formula']}" for r in rows)
    return "\n".join(lines) + f"\n\nFLOP formulas: {formulas}.\n"
