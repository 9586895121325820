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
from torch.utils.flop_counter import flop_registry, sdpa_backward_flop_count, sdpa_flop_count

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


# SDPA's CPU flash kernels (the backward of a decomposed forward lands here): flop_registry
# counts the CUDA flash ops only; the same formulas apply (grad_out, q, k, v shapes).
_CPU_SDPA = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: sdpa_flop_count,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: sdpa_backward_flop_count,
}


def _flops(node) -> int:
    packet = getattr(node.target, "overloadpacket", None)
    val = lambda a: a.meta.get("val") if isinstance(a, torch.fx.Node) else a  # noqa: E731
    args = torch.fx.node.map_arg(node.args, val)
    kwargs = torch.fx.node.map_arg(node.kwargs, val)
    if packet in _CPU_SDPA:  # FlopCounterMode has no formula for the CPU flash kernels
        return _CPU_SDPA[packet](*(a.shape for a in args[: 4 if "backward" in str(packet) else 3]))
    if packet not in flop_registry:
        return 0
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


def kernel_launches(items, ops, vocabulary) -> list[list[dict[str, Any]]]:
    """Per AOT graph, its `call()`'s kernel launches and extern calls in order, with rows.

    Each launch: {kernel (label), name (as a profiler event names it), rows: Counter of
    (phase, row) over the ops it serves}. An Inductor kernel serves the nodes whose ATen op
    its name carries; an extern call the source nodes its comment names (else the nodes of
    its op, marked ~).
    """
    from comparisons.ir.graphs import split_kernel_name

    out: list[list[dict[str, Any]]] = []
    for index, item in enumerate(items):
        launches: list[dict[str, Any]] = []
        out.append(launches)
        code = item.get("code")
        if not code:
            continue
        nodes = [op for op in ops if op["graph"] == index]
        by_name = {op["node"]: op for op in nodes}
        by_op: dict[str, list[dict[str, Any]]] = defaultdict(list)  # unclaimed, program order
        for o in nodes:
            by_op[o["op"]].append(o)
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
                op = m.group(1).split(".")[-1 if "extern" in m.group(1) else 3]
                # Dynamo's names in the comment: the next unclaimed node of that op (~)
                queue = by_op.get(aten_name(op)) or []
                served, how = (exact, "") if exact else (queue[:1], "~")
                for o in served:
                    if o in by_op.get(o["op"], []):
                        by_op[o["op"]].remove(o)
                rows = Counter((o["phase"], o["row"]) for o in served)
                launches.append(
                    {"kernel": f"{m.group(1)}{how}", "name": f"aten::{op}", "rows": rows}
                )
                names = []
            elif (m := _KERNEL_CALL.match(line)) is not None:
                covered = {n.rstrip("_") for n in split_kernel_name(m.group(1), vocabulary)}
                served = [o for o in nodes if o["op"].rstrip("_") in covered]
                rows = Counter((o["phase"], o["row"]) for o in served)
                launches.append({"kernel": m.group(1), "name": m.group(1), "rows": rows})
    return out


def inductor_kernels(launches: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """{phase, row, kernel} for each Inductor kernel / extern call and the rows it serves."""
    unique = {
        (phase, row, launch["kernel"]): {"phase": phase, "row": row, "kernel": launch["kernel"]}
        for graph in launches
        for launch in graph
        for phase, row in launch["rows"]
    }
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

    from comparisons.ir.rows import UNACCOUNTED, assign_rows, wall_shares

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
        before = len(records)
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
        if len(records) > before:
            records[-1]["start"] = ev.time_range.start
    assign_rows(records, layers)
    # Top-level events of one thread do not overlap; wall_shares makes sure of it anyway.
    spans = [(str(i), r["start"], r["start"] + r["us"]) for i, r in enumerate(records)]
    rows: dict[tuple[str, str], float] = defaultdict(float)
    for key, us in wall_shares(spans).items():
        record = records[int(key)]
        rows[(record["phase"], record["row"])] += us / steps
    wall = float(np.mean(walls)) * 1e6
    counted = sum(rows.values())
    rows[("other", UNACCOUNTED)] = max(wall - counted, 0.0)
    return {
        "rows": [{"phase": p, "row": r, "us": us} for (p, r), us in sorted(rows.items())],
        "sum_us": counted,
        "wall_us": wall,
        "events": len(spans),
        "kind": "eager",
        "source": f"torch.profiler over {steps} eager steps, mean per step (module ranges; "
        "backward by sequence_nr)",
    }


_GRAPH_CALL = "## Call CompiledFxGraph"
_KERNEL_EVENT = re.compile(r"^graph_\d+_(\w+)$")  # cpp.enable_kernel_profile's record names


def _match_graph(kernels: list[str], launches: list[list[dict[str, Any]]], used: set[int]):
    """The AOT graph whose Inductor kernels include every kernel event of one graph call."""
    names = set(kernels)
    for index, graph in enumerate(launches):
        own = {launch["name"] for launch in graph}
        if graph and names <= own and (names or index not in used):
            return index
    return None


def _rewinder(state):
    """A function that puts back the step counter, the scheduler and the optimizer's scalar
    hyperparameters (the learning rate the scheduler moves): dynamo guards on those Python
    values, so without it every profiled step would recompile the step (and, past dynamo's
    recompile limit, run it eagerly). Each profiled step is the same step, numerically moved
    on (weights, moments), with the same guards."""
    step = state.step
    scheduler = state.scheduler.state_dict() if state.scheduler is not None else None
    groups = [
        {k: v for k, v in g.items() if isinstance(v, (int, float, bool))}
        for g in state.optimizer.param_groups
    ]

    def rewind():
        state.step = step
        if scheduler is not None:
            state.scheduler.load_state_dict(scheduler)
        for group, saved in zip(state.optimizer.param_groups, groups, strict=True):
            group.update(saved)

    return rewind


def profile_compiled(compiled, args, launches, steps: int = 3) -> dict[str, Any]:
    """Wall-clock microseconds per (phase, row) of the compiled step, kernel by kernel.

    Needs Inductor's `cpp.enable_kernel_profile` at compile time: each C++ kernel then opens
    a profiler range (`graph_0_cpp_fused_..._2`); extern calls (oneDNN/MKL) are `aten::` ops.
    Inside each `## Call CompiledFxGraph` range the events are matched, in order, to the
    launches of that graph's `call()` (kernel_launches); the time of each (rows.wall_shares:
    no instant counted twice) is split among its rows by op count. Eager work outside the
    compiled graphs (`AccumulateGrad` into .grad) gets the backward row `param.grad`; the
    rest of the step's wall time is the row `unaccounted`.
    """
    import time

    from torch.profiler import ProfilerActivity, profile, record_function

    from comparisons.ir.rows import UNACCOUNTED, wall_shares

    state, *rest = args
    rewind = _rewinder(state)
    for _ in range(2):  # compile (Inductor's cache: the code `capture` recorded) and warm up
        rewind()
        compiled(state, *rest)
    frames = dict(torch._dynamo.utils.counters["frames"])
    walls = []
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            rewind()
            start = time.perf_counter()
            with record_function(f"roadmap_step::{i}"):
                compiled(state, *rest)
            walls.append(time.perf_counter() - start)
    recompiled = torch._dynamo.utils.counters["frames"].get("ok", 0) - frames.get("ok", 0)
    children: dict[int, list] = defaultdict(list)
    calls = []
    for ev in prof.events():
        if ev.cpu_parent is not None:
            children[id(ev.cpu_parent)].append(ev)
        if ev.name.startswith(_GRAPH_CALL):
            calls.append(ev)
    spans: list[tuple[str, float, float]] = []
    shares: dict[str, Counter] = {}  # span key -> rows it serves
    used: set[int] = set()
    unmatched = 0

    def leaves(ev):  # the wrapper's own launches, below `graph_0_inductor_wrapper_call`
        kids = sorted(children[id(ev)], key=lambda e: e.time_range.start)
        if len(kids) == 1 and kids[0].name.endswith("inductor_wrapper_call"):
            return leaves(kids[0])
        return kids

    for n, call in enumerate(calls):
        events = leaves(call)
        kernels = [m.group(1) for e in events if (m := _KERNEL_EVENT.match(e.name))]
        index = _match_graph(kernels, launches, used)
        if index is None:
            unmatched += 1
            continue
        used.add(index)
        queue = list(launches[index])
        for ev in events:
            m = _KERNEL_EVENT.match(ev.name)
            name = m.group(1) if m else ev.name
            k = next((i for i, launch in enumerate(queue) if launch["name"] == name), None)
            if k is None:
                continue  # an allocation or view of the wrapper: unaccounted
            launch = queue.pop(k)
            key = f"{n}:{launch['kernel']}:{len(spans)}"
            shares[key] = launch["rows"] or Counter({("other", "unattributed"): 1})
            spans.append((key, ev.time_range.start, ev.time_range.end))
    for ev in prof.events():
        if ev.name.startswith("autograd::engine::evaluate_function: torch::autograd::Accum"):
            key = f"grad:{len(spans)}"
            shares[key] = Counter({("backward", "param.grad"): 1})
            spans.append((key, ev.time_range.start, ev.time_range.end))
    rows: dict[tuple[str, str], float] = defaultdict(float)
    for key, us in wall_shares(spans).items():
        total = sum(shares[key].values())
        for row, count in shares[key].items():
            rows[row] += us * count / total / steps
    wall = float(np.mean(walls)) * 1e6
    counted = sum(rows.values())
    rows[("other", UNACCOUNTED)] = max(wall - counted, 0.0)
    return {
        "rows": [{"phase": p, "row": r, "us": us} for (p, r), us in sorted(rows.items())],
        "sum_us": counted,
        "wall_us": wall,
        "events": len(spans),
        "graph_calls": len(calls),
        "unmatched_graph_calls": unmatched,
        "recompiled_frames": recompiled,
        "kind": "compiled",
        "source": f"torch.profiler over {steps} compiled steps (Inductor's "
        "cpp.enable_kernel_profile ranges and extern aten calls, matched in order to each "
        "graph's launches; no instant counted twice), mean per step",
    }


def torch_side(
    project,
    config,
    batch_np,
    inductor: bool = True,
    profile: bool = True,
    compiled_time: bool = False,
):
    """Ops (rows assigned), kernels and time per layer of the project's train step.

    The time is the eager step's, by module ranges (profile_eager); with `compiled_time`
    (`--torch-time compiled`), the compiled step's, kernel by kernel (profile_compiled),
    from kernels built with profiler ranges. Not the default: on this CPU those builds run
    far slower than the plain ones (docs/IR.md, "torch time").
    """
    import torch._inductor.config as inductor_config

    from comparisons.ir.rows import assign_rows
    from comparisons.ir.torch_ir import TorchDump, capture, op_vocabulary
    from torchpath.common.precision import pin_fp32

    pin_fp32()
    dump = TorchDump(project, config, batch_np, {}, inductor=inductor, torchscript=False)
    layers = layer_names(dump.state.model)
    args = (dump._fresh_state(), dump.batch, dump.rng)
    # Kernel ranges in the generated C++ (a RECORD_FUNCTION per kernel): the code captured
    # here is then the code profiled below, served from Inductor's cache.
    per_kernel = inductor and profile and compiled_time
    kernel_ranges = inductor_config.patch({"cpp.enable_kernel_profile": per_kernel})
    with kernel_ranges:
        result = capture(dump.train.train_step, args, inductor=inductor, unroll_rnn=True)
    ops, items = fx_ops(result["graphs"])
    assign_rows(ops, layers)
    side: dict[str, Any] = {"framework": "torch", "layers": layers, "ops": ops, "notes": []}
    if inductor:
        launches = kernel_launches(items, ops, op_vocabulary())
        side["kernel_rows"] = inductor_kernels(launches)
        side["notes"].append(
            "torch kernels: Inductor kernels matched to a row by the ATen ops in their names; "
            "extern calls by the source nodes their comment names (else by op, marked ~)"
        )
    if profile and inductor and compiled_time:
        with kernel_ranges:
            compiled = torch.compile(dump.train.train_step)
            fresh = (dump._fresh_state(), dump.batch, dump.rng)
            side["time"] = profile_compiled(compiled, fresh, launches)
        torch._dynamo.reset()
        side["notes"].append(
            "torch time: the compiled step, kernel by kernel, built with Inductor's "
            "cpp.enable_kernel_profile (slower than the plain build: see docs/IR.md)"
        )
    elif profile:
        side["time"] = profile_eager(dump.train, dump._fresh_state(), dump.batch, dump.rng, layers)
        side["notes"].append(
            "torch time: the EAGER step (module ranges), while its ops and kernels are the "
            "compiled step's: Inductor's CPU kernels emit profiler events only when built with "
            "cpp.enable_kernel_profile, which slows them down here (--torch-time compiled)"
        )
    return side
