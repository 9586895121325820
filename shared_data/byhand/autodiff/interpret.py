"""The interpreter: run a graph on NumPy arrays, one primitive at a time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .ir import Graph, Node


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)  # exp() stays finite
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for very negative x


def _one_hot(labels: np.ndarray, num_classes: int, dtype) -> np.ndarray:
    return (labels[..., None] == np.arange(num_classes)).astype(dtype)


def _sce(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return -np.take_along_axis(_log_softmax(logits), labels[:, None].astype(np.intp), 1)[:, 0]


IMPLS = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "neg": np.negative,
    "pow": lambda x, exponent: np.power(x, np.asarray(exponent, x.dtype)),
    "exp": np.exp,
    "log": np.log,
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "relu": lambda x: np.maximum(x, 0),
    "step": lambda x: (x > 0).astype(x.dtype),
    "matmul": np.matmul,
    "sum": lambda x, axes, keepdims: np.sum(x, axis=axes, keepdims=keepdims),
    "mean": lambda x, axes, keepdims: np.mean(x, axis=axes, keepdims=keepdims),
    "broadcast_to": lambda x, shape: np.broadcast_to(x, shape),  # a view: no copy
    "reshape": lambda x, shape: np.reshape(x, shape),
    "transpose": lambda x, perm: np.transpose(x, perm),
    "softmax_cross_entropy": _sce,
    "softmax": lambda x: np.exp(_log_softmax(x)),
    "one_hot": _one_hot,
    "const": lambda value: value,
}


def eval_node(node: Node, args: Sequence[np.ndarray]) -> np.ndarray:
    """One primitive on arrays, cast back to the node's declared dtype."""
    out = np.asarray(IMPLS[node.op](*args, **node.attrs))
    return out if out.dtype == node.out.dtype else out.astype(node.out.dtype)


def evaluate(graph: Graph, *args: np.ndarray) -> list[np.ndarray]:
    """The graph's outputs on `args` (one array per graph input, shapes checked)."""
    if len(args) != len(graph.inputs):
        raise ValueError(f"the graph takes {len(graph.inputs)} inputs, got {len(args)}")
    env = {}
    for var, arg in zip(graph.inputs, args, strict=True):
        arg = np.asarray(arg)
        if arg.shape != var.shape:
            raise ValueError(f"input of shape {var.shape} given {arg.shape}")
        env[var] = arg if arg.dtype == var.dtype else arg.astype(var.dtype)
    for node in graph.nodes:
        env[node.out] = eval_node(node, [env[v] for v in node.inputs])
    return [env[v] for v in graph.outputs]
