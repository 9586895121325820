"""torch's training step as one StepGraph, and the saved tensors of an eager step.

AOTAutograd splits the compiled step where autograd splits it: the forward graph returns
the user's outputs and then every tensor the backward will read, and the backward graph
takes those tensors (placeholders of the same names) and the incoming gradients, and returns
one gradient per forward input. The optimizer step is a third graph, dynamo's trace of
`optimizer.step()`, whose first inputs are the parameters' `.grad`: the backward does not
hand them over, it writes them into `param.grad` (a side effect), and the update reads them
back. The picture draws that hand-over as edges labelled `param.grad`, matched by shape in
parameter order. `eager_saved_tensors` counts what plain eager autograd saves, with
`torch.autograd.graph.saved_tensors_hooks`, and where each saved tensor is read last.
"""

from __future__ import annotations

import operator
from typing import Any

import torch

from comparisons.ir.step import Saved, StepGraph, human_bytes, last_uses, saved_label

# One spelling of tensor types, sizes and op names for every torch picture and table of
# `roadmap ir` (torch_ir.py imports these: it imports this module already).
_DTYPES = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16"}
_DTYPES |= {"int64": "i64", "int32": "i32", "int8": "i8", "uint8": "u8", "bool": "b8"}


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)


def short(value) -> str:
    """`f32[8,256]`: the type of a tensor (the first of a tuple or list; '' for none)."""
    tensors = list(_tensors(value))
    if not tensors:
        return ""
    t = tensors[0]
    dtype = str(t.dtype).replace("torch.", "")
    return f"{_DTYPES.get(dtype, dtype)}[{','.join(str(d) for d in t.shape)}]"


def nbytes(value) -> int:
    """Bytes of a tensor, or of all the tensors of a tuple or list."""
    return sum(t.numel() * t.element_size() for t in _tensors(value))


def op_name(target) -> str:
    """An FX node target's op name: `convolution`, `prims.xxx` outside ATen."""
    if isinstance(target, torch._ops.OpOverload):
        prefix = "" if target.namespace == "aten" else f"{target.namespace}."
        return prefix + target._overloadpacket.__name__
    return getattr(target, "__name__", str(target))


def _add_graph(gm, prefix: str, phase: str, nodes, edges, where, inputs) -> list[str]:
    """Add gm's ops (getitem folded) to nodes/edges; `inputs(node)` maps placeholders to ids."""
    ops = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            where[node] = inputs(node)
        elif node.op == "call_function" and node.target is operator.getitem:
            where[node] = where.get(node.args[0])
        elif node.op == "call_function":
            nid = f"{prefix}{node.name}"
            label = f"{op_name(node.target)}\n{short(node.meta.get('val'))}"
            nodes.append({"id": nid, "label": label, "kind": "op", "phase": phase})
            edges += [(where[a], nid, None) for a in node.all_input_nodes if where.get(a)]
            where[node], _ = nid, ops.append(nid)
    return ops


# Ops whose output shares its input's storage (AOTAutograd keeps views as views).
VIEW_OPS = {"alias", "view", "_unsafe_view", "permute", "t", "transpose", "expand", "unsqueeze",
            "squeeze", "slice", "select", "as_strided", "reshape", "detach"}  # fmt: skip


def _base(node):
    """The node whose memory `node` views (itself when it is not a view)."""
    while node.op == "call_function" and op_name(node.target) in VIEW_OPS and node.args:
        node = node.args[0]
    return node


def _outputs(gm) -> list:
    out = next(n for n in gm.graph.nodes if n.op == "output")
    return list(out.args[0])


def torch_step_graph(fwd_gm, bwd_gm, upd_gm=None, upd_dynamo=None) -> StepGraph:
    """Stitch AOTAutograd's forward and backward graphs (and the optimizer's) into a StepGraph."""
    nodes: list[dict[str, Any]] = []
    edges: list[tuple[str, str, str | None]] = []
    grads_out = _outputs(bwd_gm)
    primals = [n for n in fwd_gm.graph.nodes if n.op == "placeholder"]
    kind_of = {}
    for i, p in enumerate(primals):
        has_grad = i < len(grads_out) and grads_out[i] is not None
        kind_of[p.name] = "parameter" if has_grad else "input"
        label = f"{'param' if has_grad else 'input'} {p.name}\n{short(p.meta.get('val'))}"
        nodes.append({"id": f"in:{p.name}", "label": label, "kind": "input"})
    fwhere: dict[Any, str] = {}
    _add_graph(fwd_gm, "f:", "forward", nodes, edges, fwhere, lambda n: f"in:{n.name}")
    by_name = {n.name: n for n in fwd_gm.graph.nodes}
    saved_names = [
        n.name
        for n in bwd_gm.graph.nodes
        if n.op == "placeholder" and not n.name.startswith("tangents")
    ]
    user_outputs = [o for o in _outputs(fwd_gm) if getattr(o, "name", None) not in saved_names]
    nodes.append({"id": "loss", "label": "outputs (loss, ...)", "kind": "output"})
    edges += [(fwhere[o], "loss", None) for o in user_outputs if fwhere.get(o)]
    saved: dict[str, Saved] = {}
    counted: set[str] = set()  # bases whose bytes are counted: a view shares its base's memory
    for name in saved_names:
        src = by_name.get(name)
        if src is None or fwhere.get(src) is None:
            continue
        node_id, base = fwhere[src], _base(src)
        kind = kind_of.get(base.name, "input") if base.op == "placeholder" else "activation"
        made_by = name if src.op == "placeholder" else op_name(src.target)
        if base is not src:
            made_by += f" (view of {base.name})"
        size = 0 if base.name in counted else nbytes(base.meta.get("val"))
        counted.add(base.name)
        val = src.meta.get("val")
        saved.setdefault(node_id, Saved(node_id, name, made_by, kind, short(val), size))

    def bwd_input(node):
        if node.name.startswith("tangents"):
            nodes.append({"id": f"in:{node.name}", "label": f"d {node.name}", "kind": "input"})
            return f"in:{node.name}"
        src = by_name.get(node.name)
        return fwhere.get(src) if src is not None else None

    bwhere: dict[Any, str] = {}
    start = len(edges)
    backward_ops = _add_graph(bwd_gm, "b:", "backward", nodes, edges, bwhere, bwd_input)
    reads: dict[str, set[str]] = {}
    for k in range(start, len(edges)):  # label the forward -> backward edges
        a, b, _ = edges[k]
        if a in saved and b.startswith("b:"):
            edges[k] = (a, b, saved_label(saved[a]))
            reads.setdefault(b, set()).add(a)
    labels = {n["id"]: n["label"].split("\n", 1)[0] for n in nodes}
    for s, i in last_uses(backward_ops, reads).items():
        saved[s].last_use, saved[s].last_op = i, labels[backward_ops[i]]
    if upd_gm is not None:
        _add_update(upd_gm, upd_dynamo, grads_out, bwhere, nodes, edges)
    return StepGraph(nodes, edges, list(saved.values()), backward_ops)


def _add_update(upd_gm, upd_dynamo, grads_out, bwhere, nodes, edges) -> None:
    """The optimizer graph; its `.grad` inputs are linked to the backward's gradients by shape."""
    dyn_names = [n.name for n in upd_dynamo.graph.nodes if n.op == "placeholder"]
    grads = [(bwhere.get(g), tuple(g.meta["val"].shape)) for g in grads_out if g is not None]
    unused = list(range(len(grads)))

    def upd_input(node):
        i = int(node.name.removeprefix("arg").split("_")[0]) if node.name.startswith("arg") else -1
        shape = tuple(node.meta["val"].shape) if "val" in node.meta else None
        if 0 <= i < len(dyn_names) and dyn_names[i].endswith("_grad"):
            match = next((j for j in unused if grads[j][1] == shape), None)
            if match is not None and grads[match][0]:
                unused.remove(match)
                return grads[match][0]
        nid = f"in:u:{node.name}"
        name = dyn_names[i] if 0 <= i < len(dyn_names) else node.name
        label = f"{name}\n{short(node.meta.get('val'))}"
        nodes.append({"id": nid, "label": label, "kind": "input"})
        return nid

    uwhere: dict[Any, str] = {}
    start = len(edges)
    _add_graph(upd_gm, "u:", "update", nodes, edges, uwhere, upd_input)
    grad_ids = {g for g, _ in grads}
    for k in range(start, len(edges)):
        a, b, _ = edges[k]
        if a in grad_ids:
            edges[k] = (a, b, "param.grad")
    nodes.append({"id": "new_state", "label": "new state (in place)", "kind": "output"})
    edges += [(uwhere[o], "new_state", None) for o in _outputs(upd_gm) if uwhere.get(o)]


def eager_saved_tensors(loss_fn, state, batch) -> dict[str, Any]:
    """What eager autograd saves in one step (saved_tensors_hooks), and where each dies.

    Each saved tensor is keyed by its storage, so a tensor saved by two ops (or a view of
    it) counts once; a saved parameter shares a parameter's storage, a saved input a batch
    tensor's. Dies: the backward node, in execution order, that unpacks it last.
    """
    params = {p.untyped_storage().data_ptr() for p in state.model.parameters()}
    inputs = {t.untyped_storage().data_ptr() for t in batch.values() if torch.is_tensor(t)}
    packed: list[torch.Tensor] = []
    info: dict[int, dict[str, Any]] = {}
    current = {"k": -1, "name": ""}
    order: list[str] = []

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in info:
            if key in params:
                kind, made_by = "parameter", "parameter"
            elif key in inputs:
                kind, made_by = "input", "batch"
            else:  # no grad_fn: an integer or boolean result (pooling indices, dropout mask)
                made_by = t.grad_fn.name() if t.grad_fn is not None else "non-differentiable"
                kind = "activation"
            size = t.untyped_storage().nbytes()
            info[key] = {"kind": kind, "made_by": made_by, "type": short(t), "nbytes": size,
                         "last_use": None, "last_op": ""}  # fmt: skip
        packed.append(t)
        return (len(packed) - 1, key)

    def unpack(handle):
        i, key = handle
        info[key]["last_use"], info[key]["last_op"] = current["k"], current["name"]
        return packed[i]

    state.model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        loss, _ = loss_fn(state, batch)
    handles, seen, stack = [], set(), [loss.grad_fn]
    while stack:  # every node of the autograd graph: note which one is running
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)

        def pre(grad_outputs, node=node):
            order.append(node.name())
            current["k"], current["name"] = len(order) - 1, node.name()

        handles.append(node.register_prehook(pre))
        stack += [n for n, _ in node.next_functions]
    loss.backward()
    for h in handles:
        h.remove()
    state.model.zero_grad(set_to_none=True)
    values = list(info.values())
    by_kind = {k: sum(v["nbytes"] for v in values if v["kind"] == k) for k in
               ("activation", "parameter", "input")}  # fmt: skip
    return {
        "saved_tensors": len(packed),
        "unique_storages": len(values),
        "saved_bytes": by_kind,
        "backward_nodes": len(order),
        "saved": values,
        "summary": (
            f"{len(packed)} saves of {len(values)} storages: activations "
            f"{human_bytes(by_kind['activation'])}, parameters {human_bytes(by_kind['parameter'])}"
            f", inputs {human_bytes(by_kind['input'])}; {len(order)} backward nodes ran"
        ),
    }
