"""Which row of `roadmap ir diff` each op belongs to: the framework-free attribution rules.

jax_layers.py and torch_layers.py call `assign_rows` on their op records; diff.py sets the
rows side by side. Kept apart from diff.py so that the framework sides need not import it
(and diff.py, which imports them, does not import itself back).
"""

from __future__ import annotations

from typing import Any

PHASES = ("forward", "backward", "update", "other")
INPUT_ROW = "model input"  # glue before the first layer (the MLP's flatten)
UNACCOUNTED = "unaccounted"  # step wall time no profiled kernel/op covers (a time-only row)
COLLECTIVES = "collectives"  # cross-device ops of a data-parallel step (all-reduce...)
FIXED_ROWS = ("loss", "optimizer", COLLECTIVES, "other", "unattributed", UNACCOUNTED)
MATMUL = "matmul/conv"


def _layer_of(scope: tuple[str, ...], layers: list[tuple[str, ...]]) -> str | None:
    """The longest parameterised layer path that prefixes `scope`, as 'a/b'."""
    best = max((lay for lay in layers if scope[: len(lay)] == lay), key=len, default=None)
    return "/".join(best) if best else None


def coarsen(layers: list[str], like: list[str] | None) -> list[str]:
    """`layers` with each path under one of `like` replaced by it, duplicates dropped.

    The other framework's layers (`like`) may own their parameters one module up: torch's
    nn.LSTM `fwd0` holds what Flax keeps in `fwd0/l0/cell/{ii,hi,...}`, and the Flax
    cell's fused kernel runs in `fwd0/l0/cell`, in none of those. Rows are then `fwd0`.
    """
    if not like:
        return layers
    out: dict[str, None] = {}
    for layer in layers:
        parts = layer.split("/")
        above = [lay for lay in like if parts[: len(lay.split("/"))] == lay.split("/")]
        out[max(above, key=len) if above else layer] = None
    return list(out)


def assign_rows(ops: list[dict[str, Any]], layers: list[str]) -> None:
    """Give every op record a `row` and an `attributed_by`, in place (each op exactly one row).

    Layer ops go by module scope; a backward op with no scope but a layer's forward source
    line (a forward op recomputed in the backward) goes to that layer.
    Glue ops in the forward go to `after <the last layer run>`;
    in the backward by source line (the forward glue op of the same line) or, failing that,
    by program order (`after <the next layer whose backward runs>`: autodiff runs the
    backward in reverse). Ops outside the model: loss (forward/backward), optimizer, other.
    """
    paths = [tuple(lay.split("/")) for lay in layers]
    glue_line: dict[str, str] = {}
    layer_line: dict[str, str] = {}  # source line of a layer's forward op -> the layer
    last = None
    for op in ops:
        if op["phase"] != "forward" or "row" in op:  # a side may preset a row (param.grad)
            continue
        layer = _layer_of(tuple(op["scope"]), paths) if op["in_model"] else None
        if layer:
            op["row"], op["attributed_by"], last = layer, "module", layer
            if op.get("line"):
                layer_line.setdefault(op["line"], layer)
        elif op["in_model"] and op.get("line") in glue_line and last == layers[-1]:
            # after the last layer: a mask the partitioner moved to the forward's end
            op["row"], op["attributed_by"] = glue_line[op["line"]], "source line"
        elif op["in_model"]:
            op["row"], op["attributed_by"] = (f"after {last}" if last else INPUT_ROW), "order"
            if op.get("line"):
                glue_line.setdefault(op["line"], op["row"])
    pending: list[dict[str, Any]] = []
    for op in ops:
        if "row" in op:
            continue
        layer = _layer_of(tuple(op["scope"]), paths) if op["in_model"] else None
        if op["phase"] == "backward" and layer:
            op["row"], op["attributed_by"] = layer, "module"
            for glue in pending:
                glue["row"], glue["attributed_by"] = f"after {layer}", "order"
            pending = []
        elif op["phase"] == "backward" and op["in_model"]:
            if op.get("line") in glue_line:
                op["row"], op["attributed_by"] = glue_line[op["line"]], "source line"
            else:
                pending.append(op)
        elif op["phase"] == "backward" and op.get("line") in layer_line:
            # a forward op the partitioner recomputes in the backward, its module stack lost
            op["row"], op["attributed_by"] = layer_line[op["line"]], "source line"
        elif op["in_model"] and layer:  # model code outside forward/backward (rare)
            op["row"], op["attributed_by"] = layer, "module"
        else:
            fixed = {"forward": "loss", "backward": "loss", "update": "optimizer"}
            op["row"], op["attributed_by"] = fixed.get(op["phase"], "other"), "phase"
    for glue in pending:
        glue["row"], glue["attributed_by"] = INPUT_ROW, "order"


def wall_shares(spans: list[tuple[str, float, float]]) -> dict[str, float]:
    """Each name's share of the wall clock: every instant split equally among the spans open.

    `spans` are (name, start, end) events that may overlap (threads, asynchronous thunks).
    The shares add up to the length of the spans' union, so rows built from them never sum
    to more than the time measured around the spans, and each instant is counted once.
    """
    edges = sorted(
        [(a, 1, i) for i, (_, a, b) in enumerate(spans) if b > a]
        + [(b, -1, i) for i, (_, a, b) in enumerate(spans) if b > a]
    )
    out: dict[str, float] = {name: 0.0 for name, _, _ in spans}
    open_: set[int] = set()
    last = None
    for t, kind, i in edges:
        if open_ and last is not None and t > last:
            share = (t - last) / len(open_)
            for j in open_:
                out[spans[j][0]] += share
        last = t
        if kind > 0:
            open_.add(i)
        else:
            open_.discard(i)
    return out
