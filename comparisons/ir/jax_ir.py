"""The JAX half of `roadmap ir`: jaxpr, StableHLO, HLO, optimized HLO, cost and memory analysis.

The forward pass is the project's `predict` under `jax.jit`; the training step is its own
jitted `train_step`, lowered with `train_step.lower(state, batch, rng)`. For the pictures the
training step is traced in three parts: forward (`loss_fn`), backward (the VJP of `loss_fn`,
residuals closed over) and update (`state.apply_gradients`), and the three stitched into one
phase-coloured picture with the saved values' table (comparisons/ir/jax_step.py).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import jax
import jax.extend.core as jcore

from comparisons.ir.graphs import (
    Section,
    hlo_fusions,
    hlo_instructions,
    hlo_matmul_conv_flops,
    normalize_hlo,
    normalize_jaxpr,
    normalize_mlir,
)
from comparisons.ir.jax_step import eqn_label, jax_step_graph
from comparisons.ir.jax_step import nbytes as _nbytes
from comparisons.ir.jax_step import short as _short
from comparisons.ir.opmap import JAX_WRAPPERS, count_categories, jax_category
from jaxpath.common.loop import step_rng

# A wrapper node in a picture takes the most telling category of what it wraps.
_PRIORITY = ("matmul/conv", "reduction", "random", "data movement", "elementwise", "control/other")


def _subjaxprs(value):
    if isinstance(value, jcore.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jcore.Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _subjaxprs(item)


def _leaf_eqns(jaxpr):
    """Every equation that is not a pure wrapper (jit, custom_jvp_call...), recursively."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name not in JAX_WRAPPERS:
            yield eqn
        for value in eqn.params.values():
            for sub in _subjaxprs(value):
                yield from _leaf_eqns(sub)


def jaxpr_stats(closed) -> dict[str, Any]:
    """Primitive counts, shared categories and summed intermediate bytes of a (closed) jaxpr."""
    jaxpr = getattr(closed, "jaxpr", closed)
    ops = Counter(eqn.primitive.name for eqn in _leaf_eqns(jaxpr))
    intermediate = sum(_nbytes(v.aval) for eqn in _leaf_eqns(jaxpr) for v in eqn.outvars)
    return {
        "ops": dict(ops.most_common()),
        "op_categories": count_categories(ops, jax_category),
        "intermediate_bytes": intermediate,
    }


def _leaf_names(tree, prefix: str) -> list[str]:
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [prefix + jax.tree_util.keystr(p, simple=True, separator="/") for p, _ in paths]


def _inner_category(eqn) -> str:
    """The most telling category among the primitives a higher-order equation wraps."""
    inner = {
        jax_category(e.primitive.name)
        for value in eqn.params.values()
        for sub in _subjaxprs(value)
        for e in _leaf_eqns(sub)
    }
    if eqn.primitive.name not in JAX_WRAPPERS:
        inner.add(jax_category(eqn.primitive.name))
    return next((c for c in _PRIORITY if c in inner), "control/other")


def jaxpr_graph(closed, input_names: list[str] | None = None):
    """Nodes and edges of a jaxpr's top-level dataflow (wrappers drawn as one named node)."""
    jaxpr = getattr(closed, "jaxpr", closed)
    nodes, edges, producer = [], [], {}
    for i, var in enumerate(jaxpr.constvars):
        nodes.append({"id": f"c{i}", "label": f"const {_short(var)}", "kind": "input"})
        producer[var] = f"c{i}"
    names = input_names if input_names and len(input_names) == len(jaxpr.invars) else None
    for i, var in enumerate(jaxpr.invars):
        label = f"{names[i]}\n{_short(var)}" if names else _short(var)
        nodes.append({"id": f"i{i}", "label": label, "kind": "input"})
        producer[var] = f"i{i}"
    for k, eqn in enumerate(jaxpr.eqns):
        label = eqn_label(eqn)
        shapes = ", ".join(_short(v) for v in eqn.outvars[:2])
        category = _inner_category(eqn)
        nodes.append(
            {"id": f"e{k}", "label": f"{label}\n{shapes}", "kind": "op", "category": category}
        )
        for var in eqn.invars:
            if not isinstance(var, jcore.Literal) and var in producer:
                edges.append((producer[var], f"e{k}"))
        for var in eqn.outvars:
            producer[var] = f"e{k}"
    nodes.append({"id": "out", "label": "outputs", "kind": "output"})
    edges += [(producer[v], "out") for v in jaxpr.outvars if not isinstance(v, jcore.Literal)]
    return nodes, edges


def cost_summary(compiled) -> dict[str, float]:
    """XLA's cost analysis as one dict (it is a dict or a list of dicts depending on version)."""
    costs = compiled.cost_analysis()
    if isinstance(costs, (list, tuple)):
        costs = costs[0] if costs else None
    if not costs:
        return {}
    keep = {"flops": "flops", "transcendentals": "transcendentals"}
    keep |= {"bytes accessed": "bytes_accessed", "optimal_seconds": "optimal_seconds"}
    return {new: float(costs[old]) for old, new in keep.items() if old in costs}


def memory_summary(compiled) -> dict[str, int]:
    """XLA's buffer-assignment sizes (arguments, outputs, temporaries); {} where unavailable."""
    stats = compiled.memory_analysis()
    if stats is None:
        return {}
    fields = ("argument", "output", "temp", "alias", "generated_code")
    out = {f"{f}_bytes": getattr(stats, f"{f}_size_in_bytes", None) for f in fields}
    out["peak_bytes"] = getattr(stats, "peak_memory_in_bytes", None)  # newer jaxlibs only
    return {k: int(v) for k, v in out.items() if v is not None}


class JaxDump:
    """Build the JAX artefacts of one project for the sections it is given."""

    def __init__(self, project, config, batch_np, sections: dict[str, Section], device="cpu"):
        self.train = project.module("jax", "train")
        platform = "gpu" if device in ("cuda", "gpu") else device
        put = lambda tree: jax.device_put(tree, jax.devices(platform)[0])  # noqa: E731
        self.state = put(self.train.create_state(config, 100))
        self.batch = put(self.train.to_device(batch_np))
        self.rng = put(step_rng(config.seed, 0))
        self.sections = sections
        self.lowered: dict[str, Any] = {}
        self.compiled: dict[str, Any] = {}
        variables = {"params": self.state.params}
        if getattr(self.state, "batch_stats", None) is not None:
            variables["batch_stats"] = self.state.batch_stats
        self.variables = variables
        param_bytes = sum(int(x.nbytes) for x in jax.tree.leaves(self.state.params))
        for what, section in sections.items():
            section.data["memory"] = {"param_bytes": param_bytes}
            section.data["device"] = str(jax.devices(platform)[0])
            if what == "train_step":
                opt_bytes = sum(
                    int(getattr(x, "nbytes", 0)) for x in jax.tree.leaves(self.state.opt_state)
                )
                section.data["memory"]["optimizer_state_bytes"] = opt_bytes

    def _forward(self, variables, batch):
        return self.train.predict(self.state.replace(**variables), batch)

    def _args(self, what):
        if what == "forward":
            return jax.jit(self._forward), (self.variables, self.batch)
        return self.train.train_step, (self.state, self.batch, self.rng)

    def tasks(self) -> list[tuple[Section, str, Any]]:
        """(section, label, thunk) for every artefact, in dependency order."""
        out = []
        for what, section in self.sections.items():
            out += [
                (section, "jaxpr", lambda w=what: self.jaxpr(w)),
                (section, "StableHLO", lambda w=what: self.stablehlo(w)),
                (section, "HLO", lambda w=what: self.hlo(w)),
                (section, "optimized HLO", lambda w=what: self.optimized(w)),
            ]
            if what == "train_step":
                out.append((section, "forward/backward/update graphs", self.parts))
        return out

    def jaxpr(self, what: str) -> None:
        """The jaxpr, its op counts and categories."""
        fn, args = self._args(what)
        closed = jax.make_jaxpr(fn)(*args)
        section = self.sections[what]
        section.write(f"{what}.jaxpr.txt", str(closed), normalize_jaxpr)
        stats = jaxpr_stats(closed)
        section.data["ops"], section.data["op_categories"] = stats["ops"], stats["op_categories"]
        section.data["memory"]["intermediate_bytes"] = stats["intermediate_bytes"]
        section.data["memory"]["intermediate_source"] = "jaxpr equation outputs (avals)"

    def stablehlo(self, what: str) -> None:
        """Lower with jax.jit and write the StableHLO module."""
        fn, args = self._args(what)
        self.lowered[what] = fn.lower(*args)
        text = self.lowered[what].as_text()
        self.sections[what].write(f"{what}.stablehlo.mlir", text, normalize_mlir)

    def hlo(self, what: str) -> None:
        """Classic HLO text of the lowered module, and its dot/convolution FLOPs."""
        lowered = self._need(self.lowered, what, "StableHLO")
        text = lowered.as_text(dialect="hlo")
        section = self.sections[what]
        section.write(f"{what}.hlo.txt", text, normalize_hlo)
        flops = hlo_matmul_conv_flops(text)
        section.data.setdefault("flops", {})["matmul_conv"] = flops["total"]
        section.data["flops"]["matmul_conv_dense"] = flops["dense_total"]
        section.data["flops"]["matmul_conv_by_op"] = flops["by_op"]
        section.data["flops"]["matmul_conv_ops"] = flops["ops"]
        section.data["flops"]["matmul_conv_source"] = "HLO before optimization"

    def optimized(self, what: str) -> None:
        """Compile, write the optimized HLO; fusions, cost analysis and memory analysis."""
        lowered = self._need(self.lowered, what, "StableHLO")
        compiled = lowered.compile()
        self.compiled[what] = compiled
        text = compiled.as_text()
        section = self.sections[what]
        section.write(f"{what}.opt.hlo.txt", text, normalize_hlo)
        section.data["fusions"] = hlo_fusions(text)
        # Every instruction by op, fusion bodies included: where a formulation's lowering shows
        # (nn.max_pool's backward leaves scatter and reduce-window here; reshape + max does not).
        ops = Counter(inst["op"] for inst in hlo_instructions(text))
        section.data["optimized_hlo_ops"] = dict(sorted(ops.items(), key=lambda kv: -kv[1]))
        costs = cost_summary(compiled)
        section.data.setdefault("flops", {})["cost_analysis"] = costs.get("flops")
        section.data["cost_analysis"] = costs
        section.data["memory"].update({f"xla_{k}": v for k, v in memory_summary(compiled).items()})

    def parts(self) -> None:
        """Trace forward (loss_fn), backward (its VJP) and update (apply_gradients) separately."""
        state, batch, rng = self.state, self.batch, self.rng
        section = self.sections["train_step"]
        loss = lambda params: self.train.loss_fn(params, state, batch, rng)  # noqa: E731
        fwd = jax.make_jaxpr(loss)(state.params)
        # Abstract evaluation only (no op-by-op execution): the VJP's residuals become inputs.
        box: dict[str, Any] = {}

        def forward_residuals(params):
            loss_value, vjp_fn, _aux = jax.vjp(loss, params, has_aux=True)
            residuals, box["tree"] = jax.tree.flatten(vjp_fn)
            return loss_value, residuals

        # One trace of the forward: its jaxpr (the whole-step picture below) and, from its
        # outputs' types, the residuals and the loss cotangent the backward is traced with.
        fwd_res = jax.make_jaxpr(forward_residuals)(state.params)
        loss_aval, *residual_avals = fwd_res.out_avals
        residuals = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in residual_avals]
        cotangent = jax.ShapeDtypeStruct(loss_aval.shape, loss_aval.dtype)
        pullback = lambda res, ct: jax.tree.unflatten(box["tree"], res)(ct)  # noqa: E731
        bwd = jax.make_jaxpr(pullback)(residuals, cotangent)
        grads = jax.eval_shape(jax.grad(lambda p: loss(p)[0]), state.params)
        upd = jax.make_jaxpr(lambda s, g: s.apply_gradients(grads=g))(state, grads)
        names = _leaf_names(state.params, "params/")
        bwd_names = [f"residual {i}" for i in range(len(residuals))] + ["d loss"]
        upd_names = _leaf_names(state, "state/") + _leaf_names(grads, "grads/")
        section.data["memory"]["saved_for_backward_bytes"] = sum(_nbytes(r) for r in residuals)
        parts = {}
        for part, closed, inputs in (
            ("forward", fwd, names),
            ("backward", bwd, bwd_names),
            ("update", upd, upd_names),
        ):
            section.write(f"train_step.{part}.jaxpr.txt", str(closed), normalize_jaxpr)
            parts[part] = jaxpr_stats(closed)
            nodes, edges = jaxpr_graph(closed, inputs)
            section.draw(f"train_step.{part}", nodes, edges, f"JAX train step: {part}")
        section.data["parts"] = parts
        n_grads = len(jax.tree.leaves(grads))
        step = jax_step_graph(fwd_res, bwd, upd, names, _leaf_names(state, "state/"), n_grads)
        section.draw_step("train_step.whole", step, "JAX train step: forward, backward, update")
        section.data["step"] = step.summary()

    @staticmethod
    def _need(store: dict, what: str, producer: str):
        if what not in store:
            raise RuntimeError(f"needs the {producer} step, which failed")
        return store[what]
