"""The IR: SSA values (`Var`), one node per primitive (`Node`), a `Graph`, and its text form.

Every value is defined once, by a graph input or by one node; a node names its primitive
(`op`), its operands, its static attributes and the one value it defines, which carries a
shape and a dtype. `Builder` appends nodes and infers their shapes (`SHAPE_RULES`); the tracer,
`grad` and the passes all build graphs through it.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PHASES = ("forward", "backward", "update")
UNARY = ("neg", "exp", "log", "tanh", "sigmoid", "relu", "step")
BINARY = ("add", "sub", "mul", "div")


class Var:
    """One SSA value: a shape and a dtype; identity is the object itself."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape: Sequence[int], dtype) -> None:
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __repr__(self) -> str:
        return f"Var({type_name(self)})"


@dataclass(eq=False)
class Node:
    """out = op[attrs](*inputs); `phase` says which part of a training step emitted it."""

    op: str
    inputs: tuple[Var, ...]
    attrs: dict[str, Any]
    out: Var
    phase: str = "forward"


@dataclass(eq=False)
class Graph:
    """A function: `inputs` -> `outputs`, the nodes in topological (program) order."""

    inputs: list[Var]
    nodes: list[Node]
    outputs: list[Var]
    input_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.nodes)

    def __str__(self) -> str:
        return to_text(self)

    def producers(self) -> dict[Var, Node]:
        return {n.out: n for n in self.nodes}


# ----------------------------------------------------------------------------- shape rules


def _same(op: str, *vs: Var) -> Var:
    shapes = {v.shape for v in vs}
    if len(shapes) != 1:
        raise ValueError(f"{op} needs equal shapes (the tracer inserts broadcasts), got {shapes}")
    return Var(vs[0].shape, vs[0].dtype)


def _normalise_axes(axes, ndim: int) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(ndim))
    axes = (axes,) if isinstance(axes, int) else axes
    return tuple(sorted(a % ndim for a in axes))


def _reduce(x: Var, axes, keepdims) -> Var:
    shape = [1 if i in axes else d for i, d in enumerate(x.shape)]
    if not keepdims:
        shape = [d for i, d in enumerate(x.shape) if i not in axes]
    return Var(shape, x.dtype)


def _broadcast(x: Var, shape) -> Var:
    if np.broadcast_shapes(x.shape, tuple(shape)) != tuple(shape):
        raise ValueError(f"cannot broadcast {x.shape} to {tuple(shape)}")
    return Var(shape, x.dtype)


def _reshape(x: Var, shape) -> Var:
    if int(np.prod(shape, dtype=np.int64)) != x.size:
        raise ValueError(f"cannot reshape {x.shape} to {tuple(shape)}")
    return Var(shape, x.dtype)


def _matmul(a: Var, b: Var) -> Var:
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise ValueError(f"matmul takes two matrices, got {a.shape} @ {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul shapes do not chain: {a.shape} @ {b.shape}")
    return Var((a.shape[0], b.shape[1]), a.dtype)


def _sce(logits: Var, labels: Var) -> Var:
    if len(logits.shape) != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"softmax_cross_entropy takes [N, K] and [N], got {logits.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError("softmax_cross_entropy's labels are integers")
    return Var(logits.shape[:1], logits.dtype)


SHAPE_RULES = {
    **{op: (lambda x, op=op: _same(op, x)) for op in UNARY},
    **{op: (lambda a, b, op=op: _same(op, a, b)) for op in BINARY},
    "pow": lambda x, exponent: Var(x.shape, x.dtype),
    "matmul": _matmul,
    "sum": lambda x, axes, keepdims: _reduce(x, axes, keepdims),
    "mean": lambda x, axes, keepdims: _reduce(x, axes, keepdims),
    "broadcast_to": lambda x, shape: _broadcast(x, shape),
    "reshape": lambda x, shape: _reshape(x, shape),
    "transpose": lambda x, perm: Var([x.shape[p] for p in perm], x.dtype),
    "softmax_cross_entropy": _sce,
    # Helpers that the derivatives need (they are primitives too, so grad of grad works):
    "softmax": lambda x: Var(x.shape, x.dtype),  # over the last axis
    "one_hot": lambda labels, num_classes, dtype: Var((*labels.shape, num_classes), dtype),
    "const": lambda value: Var(np.shape(value), np.asarray(value).dtype),
}


class Builder:
    """Appends nodes to a graph under construction; `phase` tags what it emits."""

    def __init__(self) -> None:
        self.inputs: list[Var] = []
        self.input_names: list[str] = []
        self.nodes: list[Node] = []
        self.phase = "forward"

    def input(self, shape, dtype, name: str = "") -> Var:
        v = Var(shape, dtype)
        self.inputs.append(v)
        self.input_names.append(name)
        return v

    def emit(self, op: str, *inputs: Var, **attrs) -> Var:
        if op in ("sum", "mean"):
            attrs["axes"] = _normalise_axes(attrs.get("axes"), len(inputs[0].shape))
            attrs["keepdims"] = bool(attrs.get("keepdims", False))
        if op in ("broadcast_to", "reshape"):
            attrs["shape"] = tuple(int(d) for d in attrs["shape"])
        out = SHAPE_RULES[op](*inputs, **attrs)
        self.nodes.append(Node(op, tuple(inputs), attrs, out, self.phase))
        return out

    def const(self, value, dtype) -> Var:
        return self.emit("const", value=np.asarray(value, dtype))

    @contextlib.contextmanager
    def in_phase(self, phase: str) -> Iterator[None]:
        previous, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = previous

    def finish(self, outputs: Sequence[Var]) -> Graph:
        return Graph(list(self.inputs), list(self.nodes), list(outputs), list(self.input_names))


def inline(builder: Builder, graph: Graph, args: Sequence[Var], keep_phase=True) -> list[Var]:
    """Copy `graph`'s nodes into `builder`, its inputs bound to `args`; return its outputs."""
    if len(args) != len(graph.inputs):
        raise ValueError(f"the graph takes {len(graph.inputs)} inputs, got {len(args)}")
    env: dict[Var, Var] = dict(zip(graph.inputs, args, strict=True))
    for node in graph.nodes:
        with builder.in_phase(node.phase if keep_phase else builder.phase):
            env[node.out] = builder.emit(node.op, *(env[v] for v in node.inputs), **node.attrs)
    return [env[v] for v in graph.outputs]


# ----------------------------------------------------------------------------- text form


_DTYPE_NAMES = {"float64": "f64", "float32": "f32", "int64": "i64", "int32": "i32", "uint8": "u8"}


def type_name(v: Var) -> str:
    """f64[3,4]: jaxpr's spelling of a value's type."""
    return f"{_DTYPE_NAMES.get(v.dtype.name, v.dtype.name)}[{','.join(map(str, v.shape))}]"


def var_names() -> Iterator[str]:
    """a, b, ..., z, ba, bb, ...: the names a jaxpr gives its values."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    yield from letters
    for size in itertools.count(2):
        for combo in itertools.product(letters[1:], *[letters] * (size - 1)):
            yield "".join(combo)


def _attr_text(value) -> str:
    if isinstance(value, np.ndarray):
        # str of a NumPy scalar is its shortest round-trip form: 0.1, not 0.10000000149011612
        return str(value.reshape(())[()]) if value.size == 1 else f"<array{list(value.shape)}>"
    if isinstance(value, np.dtype | type):
        return np.dtype(value).name
    return repr(value)


def node_text(node: Node, names: dict[Var, str]) -> str:
    """`c:f64[3,4] = broadcast_to[shape=(3, 4)] b`."""
    attrs = " ".join(f"{k}={_attr_text(v)}" for k, v in node.attrs.items())
    head = f"{node.op}[{attrs}]" if attrs else node.op
    operands = " ".join(names[v] for v in node.inputs)
    return f"{names[node.out]}:{type_name(node.out)} = {head}{' ' if operands else ''}{operands}"


def to_text(graph: Graph, phases: bool = False) -> str:
    """The graph as a jaxpr-like text; names are given in order, so the text is stable.

    `phases=True` adds a comment line wherever the phase changes (forward, backward, update).
    """
    names: dict[Var, str] = {}
    fresh = var_names()
    for v in graph.inputs:
        names[v] = next(fresh)
    for node in graph.nodes:
        names[node.out] = next(fresh)
    params = " ".join(f"{names[v]}:{type_name(v)}" for v in graph.inputs)
    lines = [f"{{ lambda ; {params}. let"]
    phase = None
    for node in graph.nodes:
        if phases and node.phase != phase:
            lines.append(f"    # {node.phase}")
            phase = node.phase
        lines.append("    " + node_text(node, names))
    outs = " ".join(names[v] for v in graph.outputs)
    lines.append(f"  in ({outs}) }}")
    return "\n".join(lines)
