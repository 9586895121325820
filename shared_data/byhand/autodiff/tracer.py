"""The tracer: write a plain Python function on `Value`s, get a `Graph`.

`trace(f, (3, 4), (4,))` calls `f` once on placeholder values whose operators (+ - * / ** @,
unary -) and methods (.sum, .mean, .reshape, .T) append nodes instead of computing. Binary
operators follow NumPy's broadcasting, written out: an operand of another shape first goes
through an explicit `broadcast_to` node, whose derivative (a sum) is what un-broadcasts.
Python numbers become `const` nodes of the operand's dtype.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from .ir import Builder, Graph, Var, inline

_CURRENT: list[Builder] = []  # the builder of the trace under way (innermost last)


class Value:
    """A traced value: a `Var` of the graph being built, with NumPy-like operators."""

    __array_priority__ = 100  # numpy scalars on the left defer to our __radd__ etc.

    def __init__(self, var: Var, builder: Builder) -> None:
        self.var = var
        self.builder = builder

    shape = property(lambda self: self.var.shape)
    dtype = property(lambda self: self.var.dtype)
    ndim = property(lambda self: len(self.var.shape))

    def __repr__(self) -> str:
        return f"Value({self.var})"

    # arithmetic: broadcast both operands to one shape, then one primitive
    def __add__(self, other):
        return _binary("add", self, other)

    def __radd__(self, other):
        return _binary("add", other, self)

    def __sub__(self, other):
        return _binary("sub", self, other)

    def __rsub__(self, other):
        return _binary("sub", other, self)

    def __mul__(self, other):
        return _binary("mul", self, other)

    def __rmul__(self, other):
        return _binary("mul", other, self)

    def __truediv__(self, other):
        return _binary("div", self, other)

    def __rtruediv__(self, other):
        return _binary("div", other, self)

    def __neg__(self):
        return _emit("neg", self)

    def __pow__(self, exponent):
        if isinstance(exponent, Value):
            raise TypeError("pow takes a Python number as exponent (x ** 2.0)")
        return _emit("pow", self, exponent=float(exponent))

    def __matmul__(self, other):
        return matmul(self, other)

    def sum(self, axis=None, keepdims=False):
        return _emit("sum", self, axes=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return _emit("mean", self, axes=axis, keepdims=keepdims)

    def reshape(self, *shape):
        return reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *perm):
        return transpose(self, perm[0] if len(perm) == 1 else (perm or None))

    @property
    def T(self):
        return transpose(self)


@contextlib.contextmanager
def tracing(builder: Builder) -> Iterator[Builder]:
    """Make `builder` the one that operators on `Value`s append to."""
    _CURRENT.append(builder)
    try:
        yield builder
    finally:
        _CURRENT.pop()


def _builder() -> Builder:
    if not _CURRENT:
        raise RuntimeError("no trace under way: call these inside trace(f, ...)")
    return _CURRENT[-1]


def _emit(op: str, *args: Value, **attrs) -> Value:
    builder = _builder()
    return Value(builder.emit(op, *(a.var for a in args), **attrs), builder)


def constant(value, dtype) -> Value:
    """A `const` node holding `value` (a number or an array) as `dtype`."""
    builder = _builder()
    return Value(builder.const(value, dtype), builder)


def _as_value(x, like: Value) -> Value:
    return x if isinstance(x, Value) else constant(x, like.dtype)


def _binary(op: str, a, b) -> Value:
    like = a if isinstance(a, Value) else b
    a, b = _as_value(a, like), _as_value(b, like)
    shape = np.broadcast_shapes(a.shape, b.shape)
    a, b = broadcast_to(a, shape), broadcast_to(b, shape)
    return _emit(op, a, b)


def broadcast_to(x: Value, shape) -> Value:
    """x broadcast to `shape` (NumPy rules); no node when the shape already matches."""
    shape = tuple(shape)
    return x if x.shape == shape else _emit("broadcast_to", x, shape=shape)


def reshape(x: Value, shape) -> Value:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if -1 in shape:  # one unknown dimension, as in NumPy
        known = int(np.prod([d for d in shape if d != -1]))
        shape = tuple(x.var.size // known if d == -1 else d for d in shape)
    return _emit("reshape", x, shape=shape)


def transpose(x: Value, perm=None) -> Value:
    perm = tuple(reversed(range(x.ndim))) if perm is None else tuple(perm)
    return _emit("transpose", x, perm=perm)


def matmul(a: Value, b: Value) -> Value:
    return _emit("matmul", a, b)


def sum(x: Value, axis=None, keepdims=False) -> Value:  # noqa: A001 - NumPy's name
    return x.sum(axis, keepdims)


def mean(x: Value, axis=None, keepdims=False) -> Value:
    return x.mean(axis, keepdims)


def exp(x: Value) -> Value:
    return _emit("exp", x)


def log(x: Value) -> Value:
    return _emit("log", x)


def tanh(x: Value) -> Value:
    return _emit("tanh", x)


def sigmoid(x: Value) -> Value:
    return _emit("sigmoid", x)


def relu(x: Value) -> Value:
    return _emit("relu", x)


def step(x: Value) -> Value:
    """1 where x > 0, else 0: relu's derivative (its own derivative is zero)."""
    return _emit("step", x)


def softmax(x: Value) -> Value:
    """Softmax over the last axis."""
    return _emit("softmax", x)


def one_hot(labels: Value, num_classes: int, dtype) -> Value:
    return _emit("one_hot", labels, num_classes=int(num_classes), dtype=np.dtype(dtype))


def softmax_cross_entropy(logits: Value, labels: Value, reduction: str = "mean") -> Value:
    """-log softmax(logits)[label] per example ([N]), or its mean (`reduction="mean"`)."""
    per_example = _emit("softmax_cross_entropy", logits, labels)
    if reduction == "none":
        return per_example
    if reduction == "mean":
        return per_example.mean()
    raise ValueError(f"reduction is 'mean' or 'none', not {reduction!r}")


def call(graph: Graph, *args: Value) -> list[Value]:
    """Use a graph as a function inside a trace: its nodes are copied in (inlined)."""
    builder = _builder()
    return [Value(v, builder) for v in inline(builder, graph, [a.var for a in args])]


Spec = tuple | np.ndarray  # a shape (dtype float64) or an example array (its shape and dtype)


def trace(
    fn: Callable[..., Value | Sequence[Value]],
    *specs: Spec,
    names: Sequence[str] = (),
    dtype=np.float64,
) -> Graph:
    """The graph of `fn` on inputs of the given shapes (or of example arrays' shapes, dtypes)."""
    builder = Builder()
    args = []
    for i, spec in enumerate(specs):
        shape, kind = (spec.shape, spec.dtype) if isinstance(spec, np.ndarray) else (spec, dtype)
        name = names[i] if i < len(names) else ""
        args.append(Value(builder.input(shape, kind, name), builder))
    with tracing(builder):
        out = fn(*args)
    outs = [out] if isinstance(out, Value) else list(out)
    return builder.finish([o.var for o in outs])
