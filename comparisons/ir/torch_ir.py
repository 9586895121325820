"""The PyTorch half of `roadmap ir`: torch.export, core ATen, TorchScript, AOTAutograd, Inductor.

The forward pass is the project's `predict` wrapped in a module and exported; the training
step is the project's own `train_step` under `torch.compile` with a backend that records the
FX graphs AOTAutograd hands to Inductor (forward, backward, and the optimizer update when
dynamo traces `optimizer.step`) and the code Inductor generates for each.
"""

from __future__ import annotations

import operator
import re
import time
import warnings
from collections import Counter
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from comparisons.ir.graphs import (
    Section,
    failure,
    normalize_fx,
    normalize_torchscript,
    parse_inductor_code,
)
from comparisons.ir.opmap import aten_category, aten_name, count_categories
from comparisons.ir.torch_step import eager_saved_tensors, torch_step_graph
from comparisons.ir.torch_step import nbytes as _bytes
from comparisons.ir.torch_step import op_name as _op_name
from comparisons.ir.torch_step import short as _short
from torchpath.common.loop import step_rng


def fx_stats(gm) -> dict[str, Any]:
    """Op counts (getitem left out), categories and summed intermediate bytes of an FX graph."""
    ops: Counter[str] = Counter()
    intermediate = 0
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target is operator.getitem:
            continue
        ops[_op_name(node.target)] += 1
        intermediate += _bytes(node.meta.get("val"))
    return {
        "ops": dict(ops.most_common()),
        "op_categories": count_categories(ops, aten_category),
        "intermediate_bytes": intermediate,
    }


def fx_graph(gm):
    """Nodes and edges of an FX graph for drawing; getitem nodes are folded into their source."""
    nodes, edges, alias = [], [], {}
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is operator.getitem:
            alias[node] = alias.get(node.args[0], node.args[0].name)
            continue
        if node.op in ("placeholder", "get_attr"):
            label = f"{node.name}\n{_short(node.meta.get('val'))}"
            nodes.append({"id": node.name, "label": label, "kind": "input"})
        elif node.op == "output":
            nodes.append({"id": node.name, "label": "outputs", "kind": "output"})
        else:
            name = _op_name(node.target)
            label = f"{aten_name(name)}\n{_short(node.meta.get('val'))}"
            category = aten_category(name)
            nodes.append({"id": node.name, "label": label, "kind": "op", "category": category})
        for arg in node.all_input_nodes:
            edges.append((alias.get(arg, arg.name), node.name))
    return nodes, edges


def op_vocabulary() -> set[str]:
    """Every registered op's packet name (to split Inductor kernel names into ATen ops)."""
    names = torch._C._dispatch_get_all_op_names()
    return {n.split("::", 1)[1].split(".", 1)[0] for n in names if "::" in n}


class _Predict(torch.nn.Module):
    """The project's predict(state, batch) as a module, so export sees the parameters."""

    def __init__(self, predict, state):
        super().__init__()
        self.model, self._predict, self._state = state.model, predict, state

    def forward(self, batch):
        return self._predict(self._state, batch)


def _from_optimizer(gm) -> bool:
    traces = (str(n.meta.get("stack_trace", "")).replace("\\", "/") for n in gm.graph.nodes)
    return any("torch/optim/" in t for t in traces)


def _break_reasons() -> list[str]:
    reasons = []
    for text in torch._dynamo.utils.counters["graph_break"]:
        explained = re.search(r"Explanation:(.*?)(?:Hint:|$)", text, flags=re.S)
        reasons.append(" ".join((explained.group(1) if explained else text).split())[:200])
    return reasons


def capture(fn, args, inductor: bool, unroll_rnn: bool = False) -> dict[str, Any]:
    """Run `fn(*args)` under torch.compile with a recording backend; graphs and Inductor code.

    `unroll_rnn`: trace nn.LSTM/GRU/RNN modules into the graphs, step by step (below).
    """
    from torch._functorch.aot_autograd import aot_module_simplified, make_boxed_func

    graphs: list[dict[str, Any]] = []

    def backend(gm, example_inputs):
        entry = {"dynamo": gm, "optimizer": _from_optimizer(gm), "aot": []}
        graphs.append(entry)

        def record(kind):
            def compiler(aot_gm, aot_inputs, **kwargs):
                kind_now = "backward" if kwargs.get("is_backward") else kind
                item = {"kind": kind_now, "gm": aot_gm, "code": None}
                entry["aot"].append(item)
                if not inductor:  # run the graph eagerly; dynamo must not trace it again
                    return make_boxed_func(torch._dynamo.disable(aot_gm.forward))
                from torch._inductor.compile_fx import compile_fx_inner

                compiled = compile_fx_inner(aot_gm, aot_inputs, **kwargs)
                item["code"] = getattr(compiled, "source_code", None)
                return compiled

            return compiler

        if inductor:
            from torch._inductor.compile_fx import compile_fx

            return compile_fx(gm, example_inputs, inner_compile=record("forward"))
        from torch._decomp import core_aten_decompositions

        return aot_module_simplified(
            gm,
            example_inputs,
            fw_compiler=record("forward"),
            bw_compiler=record("backward"),
            decompositions=core_aten_decompositions(),
        )

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    start = time.perf_counter()
    # A hit in AOTAutograd's cache skips the compilers that record the graphs; Inductor's own
    # FX-graph cache still serves the kernels, so a second dump stays fast.
    no_aot_cache = torch._functorch.config.patch(
        enable_autograd_cache=False, enable_remote_autograd_cache=False
    )
    # Dynamo leaves nn.RNN/LSTM/GRU modules out of its graphs unless allow_rnn is set (a
    # graph break per call: "Dynamo does not support RNN, GRU, or LSTM"), so the step's
    # recurrent layers ran eagerly, in no captured graph. With it, dynamo traces the module
    # to aten.lstm, which AOTAutograd decomposes into the cell's ops, step by step. `roadmap
    # ir diff` asks for it (the layer rows); plain `roadmap ir` does not: Inductor compiling
    # sentiment's unrolled 48-step LSTM took 3.2 CPU-min user + 3.3 sys (46 min at load 25).
    allow_rnn = torch._dynamo.config.patch(allow_rnn=unroll_rnn)
    try:
        with no_aot_cache, allow_rnn:
            torch.compile(fn, backend=backend)(*args)
    finally:
        breaks = _break_reasons()
        torch._dynamo.reset()
    for entry in graphs:  # label each AOT graph with the part of the step it computes
        has_backward = any(a["kind"] == "backward" for a in entry["aot"])
        for item in entry["aot"]:
            if item["kind"] == "backward":
                item["part"] = "backward"
            elif has_backward:
                item["part"] = "forward"
            else:
                item["part"] = "update" if entry["optimizer"] else "other"
    return {"graphs": graphs, "graph_breaks": breaks, "seconds": time.perf_counter() - start}


class TorchDump:
    """Build the torch artefacts of one project for the sections it is given."""

    def __init__(
        self, project, config, batch_np, sections, *, device="cpu", inductor=True, torchscript=True
    ):
        self.train = project.module("torch", "train")
        self.project, self.config, self.device = project, config, device
        self.batch = self.train.to_device(batch_np, device)
        self.rng = step_rng(config.seed, 0)
        self.state = self._fresh_state()
        self.sections, self.inductor, self.torchscript = sections, inductor, torchscript
        self.exported = None
        self._vocabulary: set[str] | None = None
        params = sum(_bytes(p) for p in self.state.model.parameters())
        buffers = sum(_bytes(b) for b in self.state.model.buffers())
        for section in sections.values():
            section.data["memory"] = {"param_bytes": params, "buffer_bytes": buffers}
            section.data["device"] = str(self.batch[next(iter(self.batch))].device)

    def _fresh_state(self):
        state = self.train.create_state(self.config, 100)
        state.model.to(self.device)  # keeps the Parameter objects the optimizer holds
        return state

    def tasks(self) -> list[tuple[Section, str, Any]]:
        """(section, label, thunk) for every artefact, in dependency order."""
        out = []
        if "forward" in self.sections:
            fwd = self.sections["forward"]
            out += [(fwd, "torch.export", self.export), (fwd, "core ATen", self.core_aten)]
            if self.torchscript:
                out.append((fwd, "TorchScript", self.script))
            out.append((fwd, "FlopCounterMode", lambda: self.flops("forward")))
            if self.inductor:
                out.append((fwd, "torch.compile (Inductor)", self.compile_forward))
        if "train_step" in self.sections:
            step = self.sections["train_step"]
            out += [
                (step, "FlopCounterMode", lambda: self.flops("train_step")),
                (step, "saved tensors (eager hooks)", self.saved_tensors),
                (step, "torch.compile (AOTAutograd graphs)", self.compile_train_step),
            ]
        return out

    def export(self) -> None:
        """torch.export of predict (eval mode): the pre-dispatch ATen graph."""
        module = _Predict(self.train.predict, self.state)
        self.exported = torch.export.export(module, (self.batch,))
        section = self.sections["forward"]
        text = self.exported.graph_module.print_readable(print_output=False)
        section.write("forward.export.txt", text, normalize_fx)
        section.data["export_ops"] = fx_stats(self.exported.graph_module)["ops"]

    def core_aten(self) -> None:
        """The exported program decomposed to core ATen: the op table's torch side."""
        if self.exported is None:
            raise RuntimeError("needs the torch.export step, which failed")
        core = self.exported.run_decompositions()
        section = self.sections["forward"]
        text = core.graph_module.print_readable(print_output=False)
        section.write("forward.core_aten.txt", text, normalize_fx)
        stats = fx_stats(core.graph_module)
        section.data["ops"], section.data["op_categories"] = stats["ops"], stats["op_categories"]
        section.data["memory"]["intermediate_bytes"] = stats["intermediate_bytes"]
        section.data["memory"]["intermediate_source"] = "core ATen graph tensor metadata"

    def script(self) -> None:
        """TorchScript (torch.jit.trace); torch 2.x deprecates it, so warnings are recorded."""
        section = self.sections["forward"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            traced = torch.jit.trace(
                _Predict(self.train.predict, self.state), (self.batch,), strict=False
            )
        messages = sorted({str(w.message).splitlines()[0] for w in caught})
        section.data["notes"] += [f"torch.jit.trace: {m}" for m in messages]
        section.write("forward.torchscript.txt", str(traced.inlined_graph), normalize_torchscript)

    def flops(self, what: str) -> None:
        """FlopCounterMode over an eager run: matmul/conv-like ops only, per op."""
        state = self.state if what == "forward" else self._fresh_state()
        with FlopCounterMode(display=False) as counter:
            if what == "forward":
                self.train.predict(state, self.batch)
            else:
                self.train.train_step(state, self.batch, self.rng)
        if what == "train_step":  # the optimizer state exists after the first step
            opt_bytes = sum(_bytes(list(s.values())) for s in state.optimizer.state.values())
            self.sections[what].data["memory"]["optimizer_state_bytes"] = opt_bytes
        flops = self.sections[what].data.setdefault("flops", {})
        flops["flop_counter"] = int(counter.get_total_flops())
        by_op = counter.get_flop_counts().get("Global", {})
        flops["flop_counter_by_op"] = {str(k): int(v) for k, v in by_op.items()}

    def compile_forward(self) -> None:
        """predict under torch.compile: the inference graph and Inductor's kernels."""
        result = capture(self.train.predict, (self._fresh_state(), self.batch), inductor=True)
        self._record(self.sections["forward"], result, "forward", draw=False)

    def compile_train_step(self) -> None:
        """train_step under torch.compile: AOT forward/backward/update graphs, Inductor kernels."""
        section = self.sections["train_step"]
        args = (self._fresh_state(), self.batch, self.rng)
        result = None
        if self.inductor:
            try:
                result = capture(self.train.train_step, args, inductor=True)
            except Exception as err:  # noqa: BLE001 -- fall back to eager AOT graphs below
                section.data["errors"]["Inductor kernels"] = f"Inductor failed: {failure(err)}"
                args = (self._fresh_state(), self.batch, self.rng)
        if result is None:
            result = capture(self.train.train_step, args, inductor=False)
            section.data["notes"].append("graphs from AOTAutograd with eager kernels (no Inductor)")
        self._record(section, result, "train_step", draw=True)

    def saved_tensors(self) -> None:
        """What eager autograd saves for the backward of loss_fn (saved_tensors_hooks)."""
        record = eager_saved_tensors(self.train.loss_fn, self._fresh_state(), self.batch)
        self.sections["train_step"].data["eager_saved"] = record

    def _whole_step(self, section: Section, graphs: list[dict[str, Any]]) -> None:
        """The largest forward/backward pair and the optimizer graph, drawn as one step."""
        pairs = [
            (g, next(a for a in g["aot"] if a["part"] == "forward"),
             next(a for a in g["aot"] if a["part"] == "backward"))
            for g in graphs
            if {a["part"] for a in g["aot"]} >= {"forward", "backward"}
        ]  # fmt: skip
        if not pairs:
            section.data["notes"].append("train_step.whole: no forward/backward pair captured")
            return
        _, fwd, bwd = max(pairs, key=lambda p: len(p[1]["gm"].graph.nodes))
        upd = next((g for g in graphs if g["optimizer"] and g["aot"]), None)
        step = torch_step_graph(
            fwd["gm"], bwd["gm"], upd["aot"][0]["gm"] if upd else None, upd and upd["dynamo"]
        )
        section.draw_step("train_step.whole", step, "PyTorch train step: forward, backward, update")
        section.data["step"] = step.summary()

    def _record(self, section: Section, result: dict[str, Any], what: str, draw: bool) -> None:
        section.data["timings_s"]["torch.compile first call"] = round(result["seconds"], 2)
        section.data["graph_breaks"] = result["graph_breaks"]
        dynamo = "\n\n".join(
            f"# dynamo graph {i}\n" + g["dynamo"].print_readable(print_output=False)
            for i, g in enumerate(result["graphs"])
        )
        section.write(f"{what}.dynamo.txt", dynamo, normalize_fx)
        by_part: dict[str, list] = {}
        for g in result["graphs"]:
            for item in g["aot"]:
                part = (
                    "inference" if what == "forward" and item["part"] == "other" else item["part"]
                )
                by_part.setdefault(part, []).append(item)
        if "update" not in by_part and what == "train_step":
            section.data["notes"].append("optimizer update not captured by dynamo: it ran eagerly")
        parts, ops = {}, Counter()
        for part, items in by_part.items():
            text = "\n\n".join(
                f"# AOTAutograd {part} graph {i}\n" + item["gm"].print_readable(print_output=False)
                for i, item in enumerate(items)
            )
            section.write(f"{what}.aot_{part}.txt", text, normalize_fx)
            stats = [fx_stats(item["gm"]) for item in items]
            part_ops = sum((Counter(s["ops"]) for s in stats), Counter())
            ops += part_ops
            parts[part] = {
                "ops": dict(part_ops.most_common()),
                "op_categories": count_categories(part_ops, aten_category),
                "intermediate_bytes": sum(s["intermediate_bytes"] for s in stats),
                "graphs": len(items),
            }
            if draw and part in ("forward", "backward", "update"):
                nodes, edges = fx_graph(max(items, key=lambda it: len(it["gm"].graph.nodes))["gm"])
                section.draw(f"{what}.{part}", nodes, edges, f"PyTorch train step: {part}")
        section.data["parts"] = parts
        if what == "train_step":
            section.data["ops"] = dict(ops.most_common())
            section.data["op_categories"] = count_categories(ops, aten_category)
            saved = sum(
                _bytes(node.meta.get("val"))
                for item in by_part.get("backward", [])
                for node in item["gm"].graph.nodes
                if node.op == "placeholder" and not node.name.startswith("tangents")
            )
            section.data["memory"]["saved_for_backward_bytes"] = saved
            section.data["memory"]["intermediate_bytes"] = sum(
                p["intermediate_bytes"] for p in parts.values()
            )
            section.data["memory"]["intermediate_source"] = "AOTAutograd graphs' tensor metadata"
            self._whole_step(section, result["graphs"])
        self._kernels(section, what, by_part)

    def _kernels(self, section: Section, what: str, by_part: dict[str, list]) -> None:
        codes = [
            (part, it["code"]) for part, items in by_part.items() for it in items if it["code"]
        ]
        if not codes:
            return
        if self._vocabulary is None:
            self._vocabulary = op_vocabulary()
        graphs = []
        for i, (part, code) in enumerate(codes):
            parsed = parse_inductor_code(code, self._vocabulary)
            name = parsed["aot_id"] or f"graph{i}"
            section.write(f"{what}.inductor/{name}.py", code)
            graphs.append({"part": part, **parsed})
        section.data["kernels"] = {
            "kernels": sum(len(g["kernels"]) for g in graphs),
            "extern_calls": sum(len(g["extern_calls"]) for g in graphs),
            "graphs": graphs,
        }
