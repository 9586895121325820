"""Reverse mode as a graph-to-graph transformation: `grad(graph)` returns a new `Graph`.

The new graph first recomputes the forward nodes (copied, phase "forward"), then walks them
in reverse, emitting for each node its vector-Jacobian product (VJP): the cotangent of each
operand from the cotangent `g` of the node's output. The rules below are written with the
tracer's operators, so they emit ordinary primitives, and the result can be printed,
simplified, and differentiated again. A rule may use the node's operands `xs` and its output
`y`: those forward values are the residuals, what the backward keeps alive.

The transformation is deliberately naive: it emits the cotangent of every operand, wanted or
not (the inputs x, a constant), and a seed of 1.0 that multiplies through. The passes
(passes.py) then delete what no output needs and fold the ones away.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from . import tracer as T
from .ir import Builder, Graph, Var, inline
from .tracer import Value


def _unbroadcast(g: Value, shape: tuple[int, ...]) -> Value:
    """Sum g down to `shape`: over the leading axes broadcasting added, and the stretched 1s."""
    lead = g.ndim - len(shape)
    axes = [i for i in range(g.ndim) if i < lead or (shape[i - lead] == 1 and g.shape[i] != 1)]
    if not axes:
        return g
    return T.reshape(g.sum(axis=tuple(axes), keepdims=True), shape)


def _un_reduce(g: Value, x: Value, axes, keepdims) -> Value:
    """Spread a reduction's cotangent back over the reduced axes (sum's VJP)."""
    if not keepdims:  # put the reduced axes back as 1s, then broadcast over them
        g = T.reshape(g, [1 if i in axes else d for i, d in enumerate(x.shape)])
    return T.broadcast_to(g, x.shape)


def _pow(g, y, x, exponent):
    if exponent == 1.0:
        return (g,)
    return (g * exponent * x ** (exponent - 1.0),)  # d x^p = p x^(p-1)


def _sce(g, y, logits, labels):
    # loss_i = -logits[i, y_i] + log sum_j exp(logits[i, j]);  d/dlogits = softmax - onehot
    n, k = logits.shape
    dlogits = T.softmax(logits) - T.one_hot(labels, k, logits.dtype)
    return (T.broadcast_to(T.reshape(g, (n, 1)), (n, k)) * dlogits, None)


def _softmax(g, y, x):
    # y = softmax(x): dx = y * (g - sum(g * y)) over the last axis
    return (y * (g - (g * y).sum(axis=-1, keepdims=True)),)


# Each rule: (g, y, *operands, **attrs) -> one cotangent per operand, None for "zero".
VJP: dict[str, Callable[..., tuple[Value | None, ...]]] = {
    "add": lambda g, y, a, b: (g, g),
    "sub": lambda g, y, a, b: (g, -g),
    "mul": lambda g, y, a, b: (g * b, g * a),
    "div": lambda g, y, a, b: (g / b, -(g * y) / b),  # d(a/b)/db = -a/b^2 = -y/b
    "neg": lambda g, y, x: (-g,),
    "pow": _pow,
    "exp": lambda g, y, x: (g * y,),
    "log": lambda g, y, x: (g / x,),
    "tanh": lambda g, y, x: (g * (1.0 - y * y),),
    "sigmoid": lambda g, y, x: (g * (y * (1.0 - y)),),
    "relu": lambda g, y, x: (g * T.step(x),),
    "step": lambda g, y, x: (None,),  # piecewise constant
    "matmul": lambda g, y, a, b: (g @ b.T, a.T @ g),
    "sum": lambda g, y, x, axes, keepdims: (_un_reduce(g, x, axes, keepdims),),
    "mean": lambda g, y, x, axes, keepdims: (
        _un_reduce(g, x, axes, keepdims) * (1.0 / int(np.prod([x.shape[a] for a in axes]))),
    ),
    "broadcast_to": lambda g, y, x, shape: (_unbroadcast(g, x.shape),),
    "reshape": lambda g, y, x, shape: (T.reshape(g, x.shape),),
    "transpose": lambda g, y, x, perm: (T.transpose(g, np.argsort(perm)),),
    "softmax_cross_entropy": _sce,
    "softmax": _softmax,
    "one_hot": lambda g, y, labels, num_classes, dtype: (None,),
    "const": lambda g, y, value: (),
}


def _is_float(v: Var) -> bool:
    return v.dtype.kind == "f"


def backward(
    builder: Builder, graph: Graph, env: dict[Var, Var], seed: Var, wrt: Sequence[int]
) -> list[Var]:
    """Emit the VJP of `graph` (its forward already in `builder`, `env` mapping old -> new
    values) for cotangent `seed` of its first output; return the cotangents of inputs `wrt`."""
    cotangent: dict[Var, Value] = {graph.outputs[0]: Value(seed, builder)}
    with T.tracing(builder), builder.in_phase("backward"):
        for node in reversed(graph.nodes):
            g = cotangent.pop(node.out, None)
            if g is None:
                continue
            operands = [Value(env[v], builder) for v in node.inputs]
            grads = VJP[node.op](g, Value(env[node.out], builder), *operands, **node.attrs)
            for v, gv in zip(node.inputs, grads, strict=True):
                if gv is None or not _is_float(v):
                    continue
                # A value used twice gets the sum of its cotangents.
                cotangent[v] = cotangent[v] + gv if v in cotangent else gv
        outs = []
        for i in wrt:
            v = graph.inputs[i]
            g = cotangent.get(v)
            outs.append(g if g is not None else T.broadcast_to(T.constant(0.0, v.dtype), v.shape))
    return [g.var for g in outs]


def _wrt_indices(graph: Graph, wrt) -> list[int]:
    if wrt is None:
        return [i for i, v in enumerate(graph.inputs) if _is_float(v)]
    wrt = [wrt] if isinstance(wrt, int | str) else list(wrt)
    return [graph.input_names.index(w) if isinstance(w, str) else int(w) for w in wrt]


def grad(graph: Graph, wrt=None, return_value: bool = False) -> Graph:
    """The graph of d output[0] / d inputs[wrt] (indices or input names; default all floats).

    output[0] must be a scalar. The new graph takes the same inputs and returns the gradients
    in `wrt`'s order, after the value itself when `return_value`.
    """
    out = graph.outputs[0]
    if out.shape != ():
        raise ValueError(f"grad needs a scalar output, got shape {out.shape}")
    indices = _wrt_indices(graph, wrt)
    builder = Builder()
    args = [builder.input(v.shape, v.dtype, n) for v, n in _named_inputs(graph)]
    env = dict(zip(graph.inputs, args, strict=True))
    for node in graph.nodes:  # the forward, copied: the backward refers to its values
        with builder.in_phase(node.phase):
            env[node.out] = builder.emit(node.op, *(env[v] for v in node.inputs), **node.attrs)
    with builder.in_phase("backward"):
        seed = builder.const(1.0, out.dtype)  # d out / d out
    grads = backward(builder, graph, env, seed, indices)
    return builder.finish(([env[out]] if return_value else []) + grads)


def _named_inputs(graph: Graph):
    names = graph.input_names or [""] * len(graph.inputs)
    return list(zip(graph.inputs, names, strict=True))


def sgd_step(graph: Graph, params: Sequence[int | str], lr: float) -> Graph:
    """One training step as one graph: forward, generated backward, update `p - lr * g`.

    Inputs are `graph`'s; outputs are the loss (output[0]) and the new value of each of
    `params`, in order. Every node carries its phase: forward, backward or update.
    """
    indices = _wrt_indices(graph, params)
    g = grad(graph, indices, return_value=True)
    builder = Builder()
    args = [builder.input(v.shape, v.dtype, n) for v, n in _named_inputs(g)]
    loss, *grads = inline(builder, g, args)
    with T.tracing(builder), builder.in_phase("update"):
        pairs = zip(indices, grads, strict=True)
        new = [Value(args[i], builder) - lr * Value(gv, builder) for i, gv in pairs]
    return builder.finish([loss, *(v.var for v in new)])


def hessian(graph: Graph, x: np.ndarray, wrt: int = 0, args: Sequence[np.ndarray] = ()):
    """d^2 output / d input[wrt]^2 at (x, *args), by reverse over reverse: H e_i for every i.

    Builds one graph, v -> d/dx <grad f(x), v>, and evaluates it once per basis vector.
    """
    from .interpret import evaluate

    first = grad(graph, wrt)
    var = graph.inputs[wrt]

    def dot_with_v(*inputs):
        *fargs, v = inputs
        (g,) = T.call(first, *fargs)
        return (g * v).sum()

    specs = [np.zeros(v.shape, v.dtype) for v in graph.inputs] + [np.zeros(var.shape, var.dtype)]
    hvp = grad(T.trace(dot_with_v, *specs), wrt)
    inputs = list(args)
    inputs.insert(wrt, x)
    size = int(np.prod(var.shape, dtype=np.int64))
    rows = []
    for i in range(size):
        e = np.zeros(size, var.dtype)
        e[i] = 1.0
        rows.append(evaluate(hvp, *inputs, e.reshape(var.shape))[0].ravel())
    return np.array(rows).reshape(var.shape + var.shape)


__all__ = ["VJP", "backward", "grad", "hessian", "sgd_step"]
