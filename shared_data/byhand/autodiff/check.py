"""Gradient checking: the generated gradient against central finite differences."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .grad import grad
from .interpret import evaluate
from .ir import Graph


def numeric_grad(graph: Graph, args: Sequence[np.ndarray], wrt: int, eps: float = 1e-6):
    """d output[0] / d args[wrt], element by element: (f(x + eps e_i) - f(x - eps e_i)) / 2 eps."""
    args = [np.array(a, copy=True) for a in args]
    x = args[wrt]
    out = np.zeros(x.shape, np.float64)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + eps
        up = float(evaluate(graph, *args)[0])
        x[i] = saved - eps
        down = float(evaluate(graph, *args)[0])
        x[i] = saved
        out[i] = (up - down) / (2 * eps)
    return out


def check_grad(graph: Graph, args: Sequence[np.ndarray], eps: float = 1e-6) -> float:
    """The largest |generated - finite-difference| over every float input (float64 args).

    The difference error is O(eps^2) plus rounding O(1e-16 / eps): about 1e-9 at eps=1e-6.
    """
    floats = [i for i, a in enumerate(args) if np.asarray(a).dtype.kind == "f"]
    grads = evaluate(grad(graph, floats), *args)
    worst = 0.0
    for i, g in zip(floats, grads, strict=True):
        worst = max(worst, float(np.max(np.abs(g - numeric_grad(graph, args, i, eps)))))
    return worst
