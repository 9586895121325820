"""The torch side of `roadmap ir diff`: the compiled train step's ops, kernels and time per layer.

Ops: every node of the FX graphs AOTAutograd hands to Inductor (comparisons/ir/torch_ir.py's
`capture`). Dynamo records the module each forward node was traced in (`nn_module_stack`)
and AOTAutograd copies it onto the backward nodes derived from it (`fwd_nn_module_stack`),
with the forward's source line (`stack_trace`). Kernels: Inductor's generated code, each
kernel matched to the nodes whose ATen op its name carries, extern calls (oneDNN/MKL) to the
source nodes its comment names. Time: torch.profiler over one eager step, with a
`record_function` range per module; backward events carry the forward op's sequence number.
"""

from __future__ import annotations

import operator
import re
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import flop_registry

from comparisons.ir.opmap import aten_category, aten_name
from comparisons.ir.torch_step import nbytes, op_name

_FRAME = re.compile(r'File "([^"]+)", line (\d+)')
_SOURCE_NODES = re.compile(r"Topologically Sorted Source Nodes: \[([^\]]*)\]")
_EXTERN = re.compile(r"\b(extern_kernels\.\w+|torch\.ops\.\w+\.\w+(?:\.\w+)?)\(")
_KERNEL_CALL = re.compile(r"^\s*((?:cpp|triton)\w*_fused\w*|cpp_fused_\w+)\(")


def scope_of(stack: dict | None) -> tuple[bool, tuple[str, ...]]:
    """nn_module_stack -> (in_model, path below the root module): (True, ('conv2',))."""
    if not stack:
        return False, ()
    paths = [v[0] if isinstance(v, tuple) else str(v) for v in stack.values()]
    root, last = paths[0], paths[-1]
    rest = last[len(root) :] if last.startswith(root) else last
    return True, tuple(t for t in re.findall(r"\w+", rest) if t != "_modules")


def _line(node) -> str:
    frames = _FRAME.findall(str(node.meta.get("stack_trace") or ""))
    return f"{frames[-1][0]}:{frames[-1][1]}" if frames else ""


def _flops(node) -> int:
    packet = getattr(node.target, "overloadpacket", None)
    if packet not in flop_registry:
        return 0
    val = lambda a: a.meta.get("val") if isinstance(a, torch.fx.Node) else a  # noqa: E731
    args = torch.fx.node.map_arg(node.args, val)
    kwargs = torch.fx.node.map_arg(node.kwargs, val)
    try:
        return int(flop_registry[packet](*args, **kwargs, out_val=node.meta.get("val")))
    except Exception:  # noqa: BLE001 -- an op the formula cannot read counts 0, not a crash
        return 0


def fx_ops(graphs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per op node (getitem left out) of every AOT graph, in execution order."""
    ops = []
    parts = {"forward": 0, "backward": 1, "update": 2, "other": 3}
    items = [(i, item) for g in graphs for i, item in enumerate(g["aot"])]
    items.sort(key=lambda it: parts.get(it[1]["part"], 4))
    for index, item in enumerate(it for _, it in items):
        for node in item["gm"].graph.nodes:
            if node.op != "call_function" or node.target is operator.getitem:
                continue
            stack = node.meta.get("nn_module_stack") or node.meta.get("fwd_nn_module_stack")
            in_model, scope = scope_of(stack)
            name = op_name(node.target)
            inputs = sum(nbytes(a.meta.get("val")) for a in node.all_input_nodes)
            ops.append(
                {
                    "phase": item["part"] if item["part"] in parts else "other",
                    "in_model": in_model,
                    "scope": list(scope),
                    "line": _line(node),
                    "op": aten_name(name),
                    "category": aten_category(name),
                    "flops": _flops(node),
                    "bytes": inputs + nbytes(node.meta.get("val")),
                    "node": node.name,
                    "graph": index,
                }
            )
    return ops, [it for _, it in items]


def inductor_kernels(items, ops, vocabulary) -> list[dict[str, Any]]:
    """{phase, row, kernel} for each Inductor kernel / extern call and the rows it serves."""
    from comparisons.ir.graphs import split_kernel_name

    out = []
    for index, item in enumerate(items):
        code = item.get("code")
        if not code:
            continue
        nodes = [op for op in ops if op["graph"] == index]
        by_name = {op["node"]: op for op in nodes}
        names, in_call = [], False
        for line in code.splitlines():
            in_call = in_call or line.strip().startswith("def call(")
            if not in_call:
                continue
            if (m := _SOURCE_NODES.search(line)) is not None:
                names = [n.strip() for n in m.group(1).split(",")]
                continue
            if (m := _EXTERN.search(line)) is not None:
                exact = [by_name[n] for n in names if n in by_name]
                targets, how = (exact, "") if exact else (nodes, "~")
                wanted = {aten_name(m.group(1).split(".")[-1 if "extern" in m.group(1) else 2])}
                served = exact or [op for op in targets if op["op"] in wanted]
                label = f"{m.group(1)}{how}"
                out += [{"phase": op["phase"], "row": op["row"], "kernel": label} for op in served]
                names = []
            elif (m := _KERNEL_CALL.match(line)) is not None:
                covered = {n.rstrip("_") for n in split_kernel_name(m.group(1), vocabulary)}
                served = [op for op in nodes if op["op"].rstrip("_") in covered]
                out += [
                    {"phase": op["phase"], "row": op["row"], "kernel": m.group(1)} for op in served
                ]
    unique = {(k["phase"], k["row"], k["kernel"]): k for k in out}
    return list(unique.values())


def layer_names(model) -> list[str]:
    """Module paths that own parameters ('conv1', 'layer1/0/conv1'), in parameter order."""
    out: dict[str, None] = {}
    for name, _ in model.named_parameters():
        out["/".join(name.split(".")[:-1])] = None
    return list(out)


# ------------------------------------------------------------------------------- profile


def profile_eager(train, state, batch, rng, layers: list[str], steps: int = 3) -> dict[str, Any]:
    """Microseconds per (phase, row) of an eager step (median of `steps`): module ranges."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from comparisons.ir.rows import assign_rows

    handles, open_ranges = [], {}
    for name, module in state.model.named_modules():

        def pre(mod, args, name=name):
            open_ranges[id(mod)] = record_function(f"module::{name}")
            open_ranges[id(mod)].__enter__()

        def post(mod, args, out):
            open_ranges.pop(id(mod)).__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        train.train_step(state, batch, rng)  # warm up (allocator, oneDNN primitives)
        import time

        walls = []
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(steps):
                start = time.perf_counter()
                with record_function(f"roadmap_step::{i}"):
                    train.train_step(state, batch, rng)
                walls.append(time.perf_counter() - start)
    finally:
        for h in handles:
            h.remove()
    records, by_seq, top_record = [], {}, {}
    for ev in prof.events():
        parent, module, optimizer, top, step = ev.cpu_parent, None, False, ev, None
        while parent is not None:
            if parent.name.startswith("roadmap_step::"):
                step = parent.name
            if parent.name.startswith("module::") and module is None:
                module = parent.name.removeprefix("module::")
            if parent.name.startswith(("aten::", "autograd::")):
                top = parent  # the outermost op: its record holds the time
            optimizer = optimizer or parent.name.startswith("Optimizer.")
            parent = parent.cpu_parent
        name, us = ev.name, ev.time_range.elapsed_us()
        if name.startswith(("module::", "roadmap_step::")) or step is None:
            continue
        if top is not ev:  # nested op: its time is its parent's; remember its sequence number
            if name.startswith("aten::") and id(top) in top_record:
                by_seq.setdefault(ev.sequence_nr, top_record[id(top)])
            continue
        if name.startswith("Optimizer.") or optimizer:
            records.append({"phase": "update", "in_model": False, "scope": [], "us": us})
            records[-1]["step"] = step
        elif name.startswith("autograd::engine::evaluate_function"):
            fwd = by_seq.get(ev.sequence_nr)
            record = {"phase": "backward", "in_model": False, "scope": [], "us": us}
            if fwd is not None:
                record |= {"in_model": fwd["in_model"], "scope": fwd["scope"]}
                record["line"] = fwd["line"]
            elif "AccumulateGrad" in name:
                record["row"], record["attributed_by"] = "param.grad", "phase"
            records.append(record | {"step": step})
        elif name.startswith("aten::"):
            scope = [t for t in (module or "").split(".") if t]
            record = {"phase": "forward", "in_model": module is not None, "scope": scope, "us": us}
            record["line"] = f"seq{ev.sequence_nr}"
            record["step"] = step
            by_seq.setdefault(ev.sequence_nr, record)
            top_record[id(ev)] = record
            records.append(record)
        elif not name.startswith("["):
            records.append({"phase": "other", "in_model": False, "scope": [], "us": us})
            records[-1]["step"] = step
    assign_rows(records, layers)
    per_step: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for r in records:
        per_step[(r["phase"], r["row"])][r["step"]] += r["us"]
    names = [f"roadmap_step::{i}" for i in range(steps)]
    rows = {k: float(np.median([c.get(n, 0.0) for n in names])) for k, c in per_step.items()}
    return {
        "rows": [{"phase": p, "row": r, "us": us} for (p, r), us in sorted(rows.items())],
        "sum_us": sum(rows.values()),
        "wall_us": float(np.median(walls)) * 1e6,
        "source": f"torch.profiler over {steps} eager steps, median per row (module ranges; "
        "backward by sequence_nr)",
    }


def torch_side(project, config, batch_np, inductor: bool = True, profile: bool = True):
    """Ops (rows assigned), kernels and eager time per layer of the project's train step."""
    from comparisons.ir.rows import assign_rows
    from comparisons.ir.torch_ir import TorchDump, capture, op_vocabulary
    from torchpath.common.precision import pin_fp32

    pin_fp32()
    dump = TorchDump(project, config, batch_np, {}, inductor=inductor, torchscript=False)
    layers = layer_names(dump.state.model)
    args = (dump._fresh_state(), dump.batch, dump.rng)
    result = capture(dump.train.train_step, args, inductor=inductor)
    ops, items = fx_ops(result["graphs"])
    assign_rows(ops, layers)
    side: dict[str, Any] = {"framework": "torch", "layers": layers, "ops": ops}
    side["notes"] = ["torch time: eager step (module ranges); the ops and kernels are compiled"]
    if inductor:
        side["kernel_rows"] = inductor_kernels(items, ops, op_vocabulary())
        side["notes"].append(
            "torch kernels: Inductor kernels matched to a row by the ATen ops in their names; "
            "extern calls by the source nodes their comment names (else by op, marked ~)"
        )
    if profile:
        side["time"] = profile_eager(dump.train, dump._fresh_state(), dump.batch, dump.rng, layers)
    return side
