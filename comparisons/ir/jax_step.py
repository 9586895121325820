"""JAX's training step as one StepGraph: forward with its VJP residuals, backward, update.

`jax.vjp(loss, params)` splits the step where autodiff splits it: the forward jaxpr returns
the loss and the residuals (every value the backward will read), the backward jaxpr takes the
residuals and the loss cotangent and returns the gradients, and `state.apply_gradients`
turns gradients into the new state. The three jaxprs are stitched here into one graph: a
residual edge runs from the forward equation (or parameter, or batch constant) that made the
value to every backward equation that reads it. Only top-level equations are drawn (a `jit`
wrapper is one node), as in `train_step.{forward,backward,update}.svg`.
"""

from __future__ import annotations

from typing import Any

import jax.extend.core as jcore
import numpy as np

from comparisons.ir.step import Saved, StepGraph, last_uses, saved_label


def short(var) -> str:
    """`f32[8,256]`: a jaxpr variable's type, as the jaxpr prints it."""
    return var.aval.str_short(short_dtypes=True)


def nbytes(aval) -> int:
    """Bytes of an abstract value (0 for PRNG keys and tokens, which have no numpy itemsize)."""
    try:
        return int(aval.size) * np.dtype(aval.dtype).itemsize
    except (TypeError, AttributeError):
        return 0


def eqn_label(eqn) -> str:
    """The primitive's name, with the wrapped function's: jit[relu], custom_jvp_call[relu]."""
    label = eqn.primitive.name
    if "name" in eqn.params:
        label += f"[{eqn.params['name']}]"
    return label


def _vars(seq):
    return [v for v in seq if not isinstance(v, jcore.Literal)]


def jax_step_graph(
    fwd, bwd, upd, param_names: list[str], state_names: list[str], n_grads: int
) -> StepGraph:
    """Stitch the three closed jaxprs into one StepGraph.

    fwd: params -> (loss, *residuals); bwd: (*residuals, d_loss) -> grads (params' order);
    upd: (*state leaves, *grad leaves) -> new state. `param_names` name fwd's inputs
    ("params/..."), `state_names` upd's state inputs ("state/...").
    """
    nodes: list[dict[str, Any]] = []
    edges: list[tuple[str, str, str | None]] = []
    fj, bj, uj = fwd.jaxpr, bwd.jaxpr, upd.jaxpr
    where: dict[Any, str] = {}  # forward var -> node id
    made_by: dict[str, tuple[str, str]] = {}  # node id -> (made_by, kind)
    for i, var in enumerate(fj.constvars):
        nodes.append({"id": f"c{i}", "label": f"batch/const\n{short(var)}", "kind": "input"})
        where[var], made_by[f"c{i}"] = f"c{i}", ("batch or constant", "input")
    param_node = {}
    for i, var in enumerate(fj.invars):
        name = param_names[i] if i < len(param_names) else f"param {i}"
        nodes.append({"id": f"p{i}", "label": f"{name}\n{short(var)}", "kind": "input"})
        where[var], made_by[f"p{i}"] = f"p{i}", (name, "parameter")
        param_node[name] = f"p{i}"
    for k, eqn in enumerate(fj.eqns):
        label = f"{eqn_label(eqn)}\n{', '.join(short(v) for v in eqn.outvars[:2])}"
        nodes.append({"id": f"f{k}", "label": label, "kind": "op", "phase": "forward"})
        edges += [(where[v], f"f{k}", None) for v in _vars(eqn.invars) if v in where]
        for v in eqn.outvars:
            where[v], made_by[f"f{k}"] = f"f{k}", (eqn_label(eqn), "activation")
    loss_var, *residual_vars = fj.outvars
    nodes.append({"id": "loss", "label": "loss", "kind": "output"})
    if not isinstance(loss_var, jcore.Literal) and loss_var in where:
        edges.append((where[loss_var], "loss", None))

    # Backward: its first len(residuals) inputs are the residuals, the last the cotangent.
    saved: dict[str, Saved] = {}
    bwhere: dict[Any, str] = {}
    for var, res in zip(bj.invars, residual_vars, strict=False):
        if isinstance(res, jcore.Literal) or res not in where:
            continue
        node = where[res]
        bwhere[var] = node
        if node not in saved:
            what, kind = made_by[node]
            name = f"forward eqn {node[1:]}" if kind == "activation" else what
            saved[node] = Saved(node, name, what, kind, short(res), nbytes(res.aval))
    nodes.append({"id": "dloss", "label": f"d loss\n{short(bj.invars[-1])}", "kind": "input"})
    bwhere[bj.invars[-1]] = "dloss"
    for i, var in enumerate(bj.constvars):
        nodes.append({"id": f"bc{i}", "label": f"const\n{short(var)}", "kind": "input"})
        bwhere[var] = f"bc{i}"
    backward_ops, reads = [], {}
    for k, eqn in enumerate(bj.eqns):
        label = f"{eqn_label(eqn)}\n{', '.join(short(v) for v in eqn.outvars[:2])}"
        nodes.append({"id": f"b{k}", "label": label, "kind": "op", "phase": "backward"})
        backward_ops.append(f"b{k}")
        reads[f"b{k}"] = set()
        for v in _vars(eqn.invars):
            src = bwhere.get(v)
            if src is None:
                continue
            crossing = src in saved
            edges.append((src, f"b{k}", saved_label(saved[src]) if crossing else None))
            if crossing:
                reads[f"b{k}"].add(src)
        for v in eqn.outvars:
            bwhere[v] = f"b{k}"
    for s, i in last_uses(backward_ops, reads).items():
        saved[s].last_use, saved[s].last_op = i, nodes_label(nodes, backward_ops[i])
    grad_src = [bwhere.get(v) if not isinstance(v, jcore.Literal) else None for v in bj.outvars]

    # Update: state leaves (parameters are the forward's inputs) and the gradients.
    uwhere: dict[Any, str] = {}
    n_state = len(uj.invars) - n_grads
    for i, var in enumerate(uj.invars):
        if i >= n_state:
            src = grad_src[i - n_state] if i - n_state < len(grad_src) else None
            if src is not None:
                uwhere[var] = src
            continue
        name = state_names[i] if i < len(state_names) else f"state {i}"
        key = name.removeprefix("state/")
        if key in param_node:
            uwhere[var] = param_node[key]
        else:
            nodes.append({"id": f"s{i}", "label": f"{name}\n{short(var)}", "kind": "input"})
            uwhere[var] = f"s{i}"
    for i, var in enumerate(uj.constvars):
        nodes.append({"id": f"uc{i}", "label": f"const\n{short(var)}", "kind": "input"})
        uwhere[var] = f"uc{i}"
    for k, eqn in enumerate(uj.eqns):
        label = f"{eqn_label(eqn)}\n{', '.join(short(v) for v in eqn.outvars[:2])}"
        nodes.append({"id": f"u{k}", "label": label, "kind": "op", "phase": "update"})
        edges += [(uwhere[v], f"u{k}", None) for v in _vars(eqn.invars) if v in uwhere]
        for v in eqn.outvars:
            uwhere[v] = f"u{k}"
    nodes.append({"id": "new_state", "label": "new state", "kind": "output"})
    edges += [(uwhere[v], "new_state", None) for v in _vars(uj.outvars) if v in uwhere]
    return StepGraph(nodes, edges, list(saved.values()), backward_ops)


def nodes_label(nodes: list[dict[str, Any]], node_id: str) -> str:
    """The op name (first line of the label) of node `node_id`."""
    for n in reversed(nodes):
        if n["id"] == node_id:
            return n["label"].split("\n", 1)[0]
    return node_id
