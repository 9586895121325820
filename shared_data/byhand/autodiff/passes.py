"""Three classic passes, each a function Graph -> Graph that never changes a value.

* `dce`: dead-code elimination, drop the nodes no output depends on;
* `cse`: common-subexpression elimination, one node for each (op, operands, attributes);
* `fold`: constant folding (a node whose operands are all small constants becomes a constant)
  plus the algebraic identities that the naive backward leaves behind: x * 1, x + 0, -(-x),
  a reshape or broadcast to the shape x already has, a transpose of a transpose, x ** 1.

`simplify` runs the three until the graph stops shrinking.
"""

from __future__ import annotations

import numpy as np

from .interpret import eval_node
from .ir import Graph, Node, Var

FOLD_MAX_SIZE = 1  # fold only scalars: folding a broadcast would store a big array instead


def _rebuild(graph: Graph, nodes: list[Node], replace: dict[Var, Var]) -> Graph:
    """`nodes` with every operand renamed through `replace` (chains followed)."""

    def find(v: Var) -> Var:
        while v in replace:
            v = replace[v]
        return v

    out = [
        Node(n.op, tuple(find(v) for v in n.inputs), n.attrs, n.out, n.phase)
        for n in nodes
        if n.out not in replace
    ]
    return Graph(graph.inputs, out, [find(v) for v in graph.outputs], graph.input_names)


def dce(graph: Graph) -> Graph:
    """Keep only the nodes some output depends on (one walk backwards)."""
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if node.out in live:
            kept.append(node)
            live.update(node.inputs)
    return Graph(graph.inputs, kept[::-1], graph.outputs, graph.input_names)


def _attrs_key(attrs: dict) -> tuple:
    items = []
    for k, v in sorted(attrs.items()):
        if isinstance(v, np.ndarray):
            v = (v.dtype.str, v.shape, v.tobytes())
        items.append((k, v))
    return tuple(items)


def cse(graph: Graph) -> Graph:
    """Merge nodes computing the same op on the same operands with the same attributes."""
    seen: dict[tuple, Var] = {}
    replace: dict[Var, Var] = {}
    for node in graph.nodes:
        inputs = tuple(replace.get(v, v) for v in node.inputs)
        key = (node.op, tuple(id(v) for v in inputs), _attrs_key(node.attrs))
        if key in seen:
            replace[node.out] = seen[key]
        else:
            seen[key] = node.out
    return _rebuild(graph, graph.nodes, replace)


def _const_value(v: Var, producers: dict[Var, Node]) -> np.ndarray | None:
    """The number `v` holds everywhere if it is a scalar constant, broadcast or reshaped."""
    node = producers.get(v)
    while node is not None and node.op in ("broadcast_to", "reshape"):
        node = producers.get(node.inputs[0])
    if node is None or node.op != "const" or node.attrs["value"].size != 1:
        return None
    return node.attrs["value"].reshape(())


def _is(v: Var, number: float, producers) -> bool:
    value = _const_value(v, producers)
    return value is not None and value.size == 1 and float(value.reshape(())) == number


def _identity(node: Node, producers: dict[Var, Node]) -> Var | None:
    """A value equal to `node`'s output that already exists, if an identity applies."""
    op, ins = node.op, node.inputs
    if op == "mul":
        for a, b in (ins, ins[::-1]):
            if _is(b, 1.0, producers):
                return a
    if op in ("add", "sub") and _is(ins[1], 0.0, producers):
        return ins[0]
    if op == "add" and _is(ins[0], 0.0, producers):
        return ins[1]
    if op == "div" and _is(ins[1], 1.0, producers):
        return ins[0]
    if op == "pow" and node.attrs["exponent"] == 1.0:
        return ins[0]
    if op in ("reshape", "broadcast_to") and ins[0].shape == node.out.shape:
        return ins[0]
    if op == "transpose" and node.attrs["perm"] == tuple(range(len(ins[0].shape))):
        return ins[0]
    inner = producers.get(ins[0]) if ins else None
    if inner is not None and op == "neg" and inner.op == "neg":
        return inner.inputs[0]
    if inner is not None and op == "transpose" and inner.op == "transpose":
        perm = tuple(inner.attrs["perm"][p] for p in node.attrs["perm"])
        if perm == tuple(range(len(perm))):
            return inner.inputs[0]
    if inner is not None and op == "reshape" and inner.op == "reshape":
        if inner.inputs[0].shape == node.out.shape:
            return inner.inputs[0]
    return None


def fold(graph: Graph) -> Graph:
    """Constant folding and algebraic identities (see the module docstring)."""
    producers: dict[Var, Node] = {}
    replace: dict[Var, Var] = {}
    nodes = []
    for node in graph.nodes:
        node = Node(node.op, tuple(replace.get(v, v) for v in node.inputs), node.attrs,
                    node.out, node.phase)  # fmt: skip
        same = _identity(node, producers)
        if same is not None:
            replace[node.out] = same
            continue
        consts = [_const_value(v, producers) for v in node.inputs]
        if (
            node.op != "const"
            and node.inputs
            and all(c is not None for c in consts)
            and node.out.size <= FOLD_MAX_SIZE
        ):
            args = [np.broadcast_to(c, v.shape) for c, v in zip(consts, node.inputs, strict=True)]
            value = eval_node(node, args)
            node = Node("const", (), {"value": np.asarray(value)}, node.out, node.phase)
        producers[node.out] = node
        nodes.append(node)
    return dce(_rebuild(graph, nodes, replace))


def simplify(graph: Graph, max_rounds: int = 10) -> Graph:
    """fold, cse, dce until the node count stops falling."""
    for _ in range(max_rounds):
        before = len(graph)
        graph = dce(cse(fold(graph)))
        if len(graph) == before:
            break
    return graph
