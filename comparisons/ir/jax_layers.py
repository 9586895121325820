"""The JAX side of `roadmap ir diff`: the jitted train step's ops, kernels and time per layer.

Ops: every leaf equation of `jax.make_jaxpr(train_step)`, with the name stack JAX records
while tracing (`jvp(CNN)/conv2`: Flax pushes each module's name; autodiff wraps the forward
in `jvp(...)` and the backward in `transpose(jvp(...))`) and the user source line. Kernels:
the top-level instructions of the compiled step's optimized HLO (fusions, convolutions,
custom calls...), attributed through the `op_name` and stack-frame metadata that XLA keeps on
every instruction, fused or not. Time: a `jax.profiler` trace of a few compiled steps, whose
CPU events are named after those top-level instructions.
"""

from __future__ import annotations

import glob
import gzip
import json
import math
import re
import tempfile
from collections import Counter, defaultdict
from typing import Any

import jax
from jax._src import source_info_util

from comparisons.ir.graphs import conv_taps, hlo_instructions
from comparisons.ir.jax_ir import _subjaxprs  # the same walk into nested jaxprs
from comparisons.ir.jax_step import nbytes as _nbytes
from comparisons.ir.opmap import JAX_WRAPPERS, jax_category
from comparisons.ir.rows import COLLECTIVES, UNACCOUNTED

_WRAPPER = re.compile(r"^(?:jvp|transpose|vmap|remat|checkpoint)\((.*)\)$")
_NOT_MODULES = {"while", "body", "cond", "closed_call", "core_call", "branch", "checkpoint"}
_NOT_MODULES |= {"shard_map", "pmap", "xla_pmap"}  # data-parallel wrappers
# Cross-device primitives and the HLO instructions they become: the `collectives` row.
JAX_COLLECTIVES = frozenset(
    "psum pmax pmin pmean all_gather all_to_all ppermute psum_scatter reduce_scatter".split()
)
HLO_COLLECTIVES = frozenset(
    "all-reduce all-reduce-start all-reduce-done all-gather all-gather-start all-gather-done "
    "reduce-scatter all-to-all collective-permute collective-permute-start "
    "collective-permute-done".split()
)
_UPDATE_FILES = ("optax", "train_state.py", "common/optim", "jaxpath/common/state.py")  # update


def parse_stack(stack: str, root: str) -> tuple[str, bool, tuple[str, ...]]:
    """'transpose(jvp(CNN))/conv2' -> (phase hint, in_model, scope): backward, True, (conv2,)."""
    hint = "backward" if "transpose(" in stack else "forward" if "jvp(" in stack else ""
    names: list[str] = []
    for part in stack.split("/"):
        if part.startswith(("jit(", "pjit(")):  # a function boundary (relu, _bernoulli), no module
            continue
        while (m := _WRAPPER.match(part)) is not None:
            part = m.group(1)
        if part and part not in _NOT_MODULES and "." not in part:  # 'VAE.encode': a method
            names.append(part)
    if root not in names:
        return hint, False, ()
    scope = tuple(names[names.index(root) + 1 :])
    while root in scope:  # a nested jvp(CNN) inside transpose(jvp(CNN)) repeats the root
        scope = scope[scope.index(root) + 1 :]
    return hint, True, scope


def _phase(hint: str, files: list[str]) -> str:
    if hint:
        return hint
    return "update" if any(any(u in f for u in _UPDATE_FILES) for f in files) else "other"


def _flops(eqn) -> int:
    """2*M*N*K for dot_general; conv as comparisons/ir/graphs.hlo_matmul_conv_flops counts it."""
    name = eqn.primitive.name
    out = eqn.outvars[0].aval.shape
    if name == "dot_general":
        (contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        return 2 * math.prod(out) * math.prod(lhs[d] for d in contract)
    if name == "conv_general_dilated":
        lhs_spec, rhs_spec, out_spec = eqn.params["dimension_numbers"]
        lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
        window = [rhs[d] for d in rhs_spec[2:]]
        out_sp = math.prod(out[d] for d in out_spec[2:])
        in_sp = math.prod(lhs[d] for d in lhs_spec[2:])
        others = math.prod(out) // out_sp
        taps = conv_taps(out_sp, in_sp, window, eqn.params.get("lhs_dilation"))
        return 2 * others * taps * rhs[rhs_spec[1]]
    return 0


def jaxpr_ops(closed, root: str) -> list[dict[str, Any]]:
    """One record per leaf equation of the step, nested name stacks and frames composed.

    An equation inside a `scan` body runs `length` times: its FLOPs and bytes are counted
    that many times (`runs`), as torch's unrolled recurrence counts each step's ops. A
    `while` body's trip count is not known from the jaxpr: counted once.
    """
    ops: list[dict[str, Any]] = []

    def walk(jaxpr, outer: str, outer_line: str, outer_files: list[str], runs: int = 1) -> None:
        for eqn in jaxpr.eqns:
            inner = str(eqn.source_info.name_stack)
            stack = "/".join(s for s in (outer, inner) if s)
            frame = source_info_util.user_frame(eqn.source_info.traceback)
            line = f"{frame.file_name}:{frame.start_line}" if frame else outer_line
            files = outer_files + [f.file_name for f in _frames(eqn)]
            subs = [s for v in eqn.params.values() for s in _subjaxprs(v)]
            inner_runs = (
                runs * int(eqn.params.get("length", 1)) if eqn.primitive.name == "scan" else runs
            )
            for sub in subs:
                walk(sub, stack, line, files, inner_runs)
            if eqn.primitive.name in JAX_WRAPPERS or (subs and eqn.primitive.name == "pjit"):
                continue
            hint, in_model, scope = parse_stack(stack, root)
            name = eqn.primitive.name
            collective = {"row": COLLECTIVES, "attributed_by": "collective"}
            ops.append(
                (collective if name in JAX_COLLECTIVES else {})
                | {
                    "phase": _phase(hint, files),
                    "in_model": in_model,
                    "scope": list(scope),
                    "line": line,
                    "op": name,
                    "category": jax_category(name),
                    "flops": runs * _flops(eqn),
                    "bytes": runs
                    * (
                        sum(_nbytes(v.aval) for v in eqn.invars if hasattr(v, "aval"))
                        + sum(_nbytes(v.aval) for v in eqn.outvars)
                    ),
                    "runs": runs,
                    "stack": stack,
                }
            )

    walk(closed.jaxpr, "", "", [])
    return ops


def _frames(eqn):
    """Every frame (library ones too: user_frames hides optax, which tells the update apart)."""
    traceback = eqn.source_info.traceback
    return list(getattr(traceback, "frames", None) or []) if traceback is not None else []


# --------------------------------------------------------------------- optimized HLO kernels

_META = re.compile(r'op_name="([^"]*)"')
_FRAME_ID = re.compile(r"stack_frame_id=(\d+)")
_CALLS = re.compile(r"(?:calls|body|condition|to_apply)=%?([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")


def _called(rest: str) -> list[str]:
    """Computations an instruction runs: calls=, body=, condition=, to_apply=, every branch."""
    branches = [b.strip().lstrip("%") for m in _BRANCHES.findall(rest) for b in m.split(",")]
    return _CALLS.findall(rest) + branches


_TRIVIAL = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast"}


def _stack_frames(text: str) -> dict[int, str]:
    """stack_frame_id -> 'file:line' of its innermost frame (the tables after the module)."""
    tables: dict[str, dict[int, str]] = defaultdict(dict)
    section = None
    for line in text.splitlines():
        if line.strip() in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            section = line.strip()
            continue
        m = re.match(r"^(\d+) (.*)$", line)
        if section and m:
            tables[section][int(m.group(1))] = m.group(2)
        elif not line.strip():
            section = None
    files = {k: v.strip('"') for k, v in tables["FileNames"].items()}
    out = {}
    for fid, body in tables["StackFrames"].items():
        loc = re.search(r"file_location_id=(\d+)", body)
        where = tables["FileLocations"].get(int(loc.group(1)) if loc else -1, "")
        f, ln = re.search(r"file_name_id=(\d+)", where), re.search(r"line=(\d+)", where)
        if f and ln:
            out[fid] = f"{files.get(int(f.group(1)), '')}:{ln.group(1)}"
    return out


def hlo_kernels(text: str, ops: list[dict[str, Any]], root: str, layers: list[str]):
    """Top-level instructions of the optimized HLO, each with its rows (instruction counts).

    An instruction goes to a row by its `op_name` metadata (and source line). One without
    usable metadata (layout copies, the weight-gradient convolutions XLA:CPU outlines, scalar
    pieces of a fusion) is inferred: a convolution or dot by the FLOPs of the jaxpr equation
    still unmatched in its row, anything else from the nearest attributed consumer, else
    producer, in the operand graph (inside its fusion first, then between kernels). Those
    rows are counted in `inferred`; what has no attributed neighbour stays `unattributed`.
    """
    from comparisons.ir.graphs import hlo_matmul_conv_flops
    from comparisons.ir.rows import _layer_of

    # '/*index=5*/' comments inside tuple shapes would hide those instructions from the parser
    text = re.sub(r"/\*index=\d+\*/", "", text)
    frames = _stack_frames(text)
    by_key: dict[tuple, Counter] = defaultdict(Counter)
    for op in ops:  # what the jaxpr attribution says each (phase, scope, line, op) is
        by_key[(op["phase"], op["in_model"], tuple(op["scope"]), op["line"])][op["row"]] += 1
        by_key[(op["phase"], op["in_model"], tuple(op["scope"]))][op["row"]] += 1
    insts = hlo_instructions(text)
    entry = next((i["computation"] for i in insts[::-1] if i["op"] not in _TRIVIAL), "")
    for line in text.splitlines():
        if line.startswith("ENTRY"):
            entry = re.match(r"ENTRY\s+%?([\w.\-]+)", line).group(1)
    owner: dict[str, str] = {}  # computation -> top-level instruction that runs it
    for inst in insts:
        if inst["computation"] == entry:
            for comp in _called(inst["rest"]):
                owner[comp] = inst["name"]
    for _ in range(4):  # nested: a while body calling fusions
        for inst in insts:
            top = owner.get(inst["computation"])
            for comp in _called(inst["rest"]) if top else ():
                owner.setdefault(comp, top)
    paths = [tuple(lay.split("/")) for lay in layers]

    def direct(inst) -> tuple[str, str] | None:
        m, fid = _META.search(inst["rest"]), _FRAME_ID.search(inst["rest"])
        if m is None:
            return None
        # op_name is jit(<step>)/<name stack>/<primitive>: keep the name stack
        stack = "/".join(m.group(1).split("/")[1:-1])
        hint, in_model, scope = parse_stack(stack, root)
        phase = _phase(hint, [])
        layer = _layer_of(scope, paths) if in_model else None
        if layer:
            return phase, layer
        line = frames.get(int(fid.group(1)), "") if fid else ""
        # update and other share the unwrapped stack: the source line tells them apart
        phases = [phase] if hint else ["update", "other"]
        keys = [(p, in_model, scope, line) for p in phases] + [(p, in_model, scope) for p in phases]
        key = next((k for k in keys if k in by_key), None)
        return (key[0], by_key[key].most_common(1)[0][0]) if key else None

    # ---- the instructions a kernel runs, each with its row where metadata gives it
    tops: dict[str, dict[str, Any]] = {}  # kernel name -> {op, insts}
    rows: dict[tuple[str, str], tuple[str, str] | None] = {}  # (computation, name) -> row
    how: dict[tuple[str, str], str] = {}
    for inst in insts:
        top = inst["name"] if inst["computation"] == entry else owner.get(inst["computation"])
        if top is None or inst["op"] in _TRIVIAL:
            continue
        kernel = tops.setdefault(top, {"op": "", "insts": []})
        if top == inst["name"]:
            kind = re.search(r"kind=(k\w+)", inst["rest"])
            kernel["op"] = inst["op"] + (f" {kind.group(1)}" if kind else "")
            if inst["op"] in ("fusion", "while", "call", "conditional"):
                kernel["own"] = direct(inst)  # its metadata, if none of its instructions has any
                continue  # counted through the instructions it runs
        key = (inst["computation"], inst["name"])
        kernel["insts"].append(key)
        rows[key] = direct(inst)
    # ---- convolutions and dots without metadata: the jaxpr equation of equal FLOPs left over
    want: Counter = Counter(  # per run: an instruction in a loop body runs once per trip
        (op["phase"], op["row"], op["flops"] // op.get("runs", 1)) for op in ops if op["flops"]
    )
    flops = {o["name"]: o["flops"] for o in hlo_matmul_conv_flops(text)["ops"]}
    for (_, name), row in rows.items():
        if row is not None and name in flops:
            want[(*row, flops[name])] -= 1
    for key, row in rows.items():
        if row is None and key[1] in flops:
            free = [k for k, n in want.items() if n > 0 and k[2] == flops[key[1]]]
            if len({k[:2] for k in free}) == 1:
                rows[key], how[key] = free[0][:2], "FLOPs of a jaxpr equation"
                want[free[0]] -= 1
    # ---- the rest through the operand graph: inside the fusion, then between kernels
    by_comp: dict[str, dict[str, dict]] = defaultdict(dict)
    for inst in insts:
        by_comp[inst["computation"]][inst["name"]] = inst
    users: dict[tuple[str, str], list[str]] = defaultdict(list)
    for inst in insts:
        for operand in inst["operands"]:
            users[(inst["computation"], operand)].append(inst["name"])

    def nearest(comp: str, name: str, known) -> tuple[tuple[str, str], str] | None:
        """Breadth-first along users, and along operands, consumers first at each distance.

        The walks do not turn (a tuple's other operands are not neighbours); `known` -> row.
        """
        fronts = {"consumer": [name], "producer": [name]}
        seen = {"consumer": {name}, "producer": {name}}
        for _ in range(40):
            for direction, level in fronts.items():
                nxt = []
                for node in level:
                    inst = by_comp[comp].get(node)
                    if direction == "consumer":
                        near = users[(comp, node)]
                    else:
                        near = inst["operands"] if inst else []
                    for other in near:
                        if other in seen[direction]:
                            continue
                        seen[direction].add(other)
                        nxt.append(other)
                        if (row := known(other)) is not None:
                            return row, f"{direction} {other}"
                fronts[direction] = nxt
            if not any(fronts.values()):
                return None
        return None

    for key, row in list(rows.items()):
        if row is None and key[0] != entry:  # inside a fusion or loop body
            found = nearest(*key, lambda n, c=key[0]: rows.get((c, n)))
            if found is not None:
                rows[key], how[key] = found[0], found[1]

    for key in rows:  # an all-reduce goes to `collectives`, whatever op its metadata names
        inst = by_comp[key[0]].get(key[1])
        if inst is not None and inst["op"] in HLO_COLLECTIVES:
            phase = rows[key][0] if rows[key] else "update"
            rows[key] = (phase, COLLECTIVES)
            how.pop(key, None)

    def kernel_row(name: str) -> tuple[str, str] | None:
        counted = Counter(rows[k] for k in tops[name]["insts"] if rows[k])
        return counted.most_common(1)[0][0] if counted else tops[name].get("own")

    top_rows = {name: kernel_row(name) for name in tops}
    for name, kernel in tops.items():
        found = (top_rows[name], f"kernel {name}") if top_rows[name] else None
        found = found or nearest(entry, name, top_rows.get)
        for key in kernel["insts"] or [(entry, name)]:
            if rows.get(key) is None and found is not None:
                rows[key], how[key] = found
    kernels: dict[str, dict[str, Any]] = {}
    for name, kernel in tops.items():
        keys = kernel["insts"] or [(entry, name)]
        counted = Counter(rows.get(k) or ("other", "unattributed") for k in keys)
        inferred = Counter(rows[k] for k in keys if k in how)
        via = {rows[k]: how[k] for k in keys if k in how}
        kernels[name] = {
            "name": name,
            "op": kernel["op"],
            "rows": counted,
            "inferred": inferred,
            "via": via,
        }
    return kernels


# ------------------------------------------------------------------------------- profile


def _spans(runs: list[tuple[float, float]], ends: list[float]) -> list[tuple[float, float]]:
    """Each run's (start, end): its event, or until its `end:` event when the thunk ran async."""
    out, k = [], 0
    for ts, dur in sorted(runs):
        while k < len(ends) and ends[k] < ts:
            k += 1
        out.append((ts, ts + (max(dur, ends[k] - ts) if k < len(ends) else dur)))
        k += k < len(ends)
    return out


def profile_kernels(step, args, kernels, steps: int = 5, module: str = "") -> dict[str, Any]:
    """Wall-clock microseconds per step of each top-level HLO instruction (jax.profiler trace).

    `module` is the compiled HLO module's name (`jit_train_step`): only its events count.

    XLA:CPU runs independent thunks concurrently, so their spans overlap: every instant of
    the trace is split equally among the `kernels` running then (rows.wall_shares), and the
    shares add up to the time some kernel ran, at most the step's wall time. Events of
    instructions inside a while body are left out: their while's span holds them.
    """
    import time

    from comparisons.ir.rows import wall_shares

    state, *rest = args
    for _ in range(2):  # compile and warm up outside the trace
        state, _ = step(state, *rest)
    jax.block_until_ready(state)
    with tempfile.TemporaryDirectory(prefix="roadmap_ir_diff_") as folder:
        with jax.profiler.trace(folder):
            start = time.perf_counter()
            for _ in range(steps):
                state, _ = step(state, *rest)
            jax.block_until_ready(state)
            wall = (time.perf_counter() - start) / steps
        path = sorted(glob.glob(f"{folder}/**/*.trace.json.gz", recursive=True))[-1]
        with gzip.open(path) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    starts: dict[str, list[tuple[float, float]]] = defaultdict(list)
    ends: dict[str, list[float]] = defaultdict(list)
    for ev in events:
        args_, name = ev.get("args") or {}, str(ev.get("name", ""))
        if ev.get("ph") != "X":
            continue
        if "hlo_op" in args_ and _same_module(args_.get("hlo_module", ""), module):
            starts[args_["hlo_op"]].append((float(ev["ts"]), float(ev.get("dur", 0.0))))
        elif name.startswith("end: "):  # an async thunk (a convolution, a dot) completing
            ends[name[5:]].append(float(ev["ts"]) + float(ev.get("dur", 0.0)))
    spans = [
        (name, a, b)
        for name, runs in starts.items()
        if name in kernels
        for a, b in _spans(runs, sorted(ends.get(name, [])))
    ]
    shares = wall_shares(spans)
    return {
        "per_op_us": {k: v / steps for k, v in shares.items()},
        "wall_us": wall * 1e6,
        "steps": steps,
        "events": len(spans),
    }


def _same_module(event_module: str, module: str) -> bool:
    """Whether a trace event's `hlo_module` is `module` (any train step when none is named)."""
    if not module:
        return "train_step" in event_module
    return event_module == module or event_module.startswith(f"{module}(")


def jax_side(
    project,
    config,
    batch_np,
    profile: bool = True,
    steps: int = 5,
    kernels: bool = True,
    run: dict[str, Any] | None = None,
    layers_like: list[str] | None = None,
) -> dict[str, Any]:
    """Ops (rows assigned), kernels and time per layer of the project's jitted train step.

    `run` ({devices, parallel}) asks for the data-parallel step (comparisons/ir/jax_programs).
    `layers_like`: the other framework's layers; a Flax layer inside one of them is
    counted in it (rows.coarsen: torch's nn.LSTM against Flax's cell and its Dense parts).
    """
    from comparisons.ir.jax_programs import compiled_text, jax_program, make_jaxpr
    from comparisons.ir.rows import assign_rows, coarsen
    from jaxpath.common.precision import pin_fp32

    pin_fp32()
    program = jax_program(project, config, batch_np, run)
    root, layers = program.root, coarsen(program.layers, layers_like)
    ops = jaxpr_ops(make_jaxpr(program), root)
    assign_rows(ops, layers)
    side: dict[str, Any] = {"framework": "jax", "layers": layers, "root": root, "ops": ops}
    side["traced"] = program.traced  # which program the rows are of
    side["notes"] = list(program.notes)
    if not kernels:  # the jaxpr alone (tests): no XLA compile, no kernels, no time
        return side
    text = compiled_text(program)
    kernels = hlo_kernels(text, ops, root, layers)
    side["kernel_rows"] = [
        {"phase": row[0], "row": row[1], "kernel": _kernel_label(k, row)}
        | ({"inferred": k["via"][row]} if k["inferred"][row] == n else {})
        for k in kernels.values()
        for row, n in k["rows"].items()
    ]
    side["notes"] += [
        "JAX kernels: top-level instructions of the optimized HLO; a fusion that holds ops of "
        "several rows is listed in each, its time split by instruction count",
        "JAX kernels without op_name metadata: inferred (a conv/dot by the FLOPs of an unmatched "
        "jaxpr equation, else the nearest attributed consumer or producer in the HLO operand "
        "graph), marked 'inferred' (n~ in the text); the rest stay 'unattributed'",
    ]
    if profile:
        module = re.match(r"HloModule\s+([\w.\-]+)", text)
        prof = profile_kernels(
            program.fn, program.args, kernels, steps, module=module.group(1) if module else ""
        )
        side["time"] = kernel_time(kernels, prof) | {"kind": "compiled"}
        side["time"]["source"] = (
            f"jax.profiler trace of {steps} compiled steps: XLA thunk spans, each instant split "
            "among the thunks running then (no overlap), mean per step"
        )
    return side


def _kernel_label(kernel: dict[str, Any], row: tuple[str, str]) -> str:
    """'convolution.2 (convolution)', or '... (convolution; inferred: FLOPs ...)'."""
    if kernel["inferred"][row] == kernel["rows"][row]:
        return f"{kernel['name']} ({kernel['op']}; inferred: {kernel['via'][row]})"
    return f"{kernel['name']} ({kernel['op']})"


def kernel_time(kernels: dict[str, dict[str, Any]], prof: dict[str, Any]) -> dict[str, Any]:
    """Per (phase, row) microseconds: each kernel's share split by its instruction counts.

    The rows add up to the time some kernel ran; the rest of the step's wall time (dispatch,
    waits between thunks, the profiler itself) is the row `unaccounted` of phase `other`.
    """
    rows: dict[tuple[str, str], float] = defaultdict(float)
    for name, us in prof["per_op_us"].items():
        kernel = kernels[name]
        total = sum(kernel["rows"].values())
        for key, n in kernel["rows"].items():
            rows[key] += us * n / total
    counted = sum(rows.values())
    rows[("other", UNACCOUNTED)] = max(prof["wall_us"] - counted, 0.0)
    return {
        "rows": [{"phase": p, "row": r, "us": us} for (p, r), us in sorted(rows.items())],
        "kernel_us": {k: round(v, 2) for k, v in prof["per_op_us"].items()},
        "sum_us": counted,
        "wall_us": prof["wall_us"],
        "events": prof["events"],
    }
