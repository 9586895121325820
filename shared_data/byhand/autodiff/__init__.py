"""A toy reverse-mode autodiff engine in NumPy, where the backward is a graph transformation.

Write a function on traced values, get a graph in a small SSA IR; `grad` turns that graph
into a new graph of the same IR, which can be printed, simplified by passes, drawn, run by
the interpreter, and differentiated again:

    from shared_data.byhand import autodiff as ad

    f = ad.trace(lambda x, w, b: ad.tanh(x @ w + b).mean(), (2, 3), (3, 4), (4,))
    g = ad.grad(f, wrt=[1, 2])            # a Graph: (x, w, b) -> (dw, db)
    print(ad.to_text(ad.simplify(g)))     # jaxpr-like text
    dw, db = ad.evaluate(g, x, w, b)

Modules: ir (values, nodes, graphs, text), tracer, interpret, grad (VJP rules,
grad, sgd_step, hessian), passes (dce, cse, fold, simplify), dot (Graphviz source), check
(finite differences), mlp (the MNIST MLP trained with all of the above).
"""

from .check import check_grad, numeric_grad
from .dot import PHASE_COLORS, to_dot
from .grad import VJP, grad, hessian, sgd_step
from .interpret import evaluate
from .ir import Builder, Graph, Node, Var, to_text
from .passes import cse, dce, fold, simplify
from .tracer import (
    Value,
    broadcast_to,
    call,
    constant,
    exp,
    log,
    matmul,
    mean,
    relu,
    reshape,
    sigmoid,
    softmax,
    softmax_cross_entropy,
    sum,
    tanh,
    trace,
    transpose,
)

__all__ = [
    "PHASE_COLORS", "VJP", "Builder", "Graph", "Node", "Value", "Var", "broadcast_to", "call",
    "check_grad", "constant", "cse", "dce", "evaluate", "exp", "fold", "grad", "hessian", "log",
    "matmul", "mean", "numeric_grad", "relu", "reshape", "sgd_step", "sigmoid", "simplify",
    "softmax", "softmax_cross_entropy", "sum", "tanh", "to_dot", "to_text", "trace", "transpose",
]  # fmt: skip
