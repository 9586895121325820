"""Graphviz DOT source of a graph, every node coloured by its phase (plain text, no graphviz).

Inputs are ellipses, ops boxes (forward blue, backward orange, update green), outputs
double circles. An edge from a forward value into a backward node carries a residual: it is
drawn bold and labelled with the saved value's type.
"""

from __future__ import annotations

from .ir import Graph, Var, node_text, to_text, type_name, var_names

PHASE_COLORS = {"forward": "#92c5de", "backward": "#f4a582", "update": "#b8e186"}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: Graph, title: str = "") -> str:
    """DOT source: one graph node per input, op and output; names as in `to_text`."""
    names: dict[Var, str] = {}
    fresh = var_names()
    for v in [*graph.inputs, *(n.out for n in graph.nodes)]:
        names[v] = next(fresh)
    lines = ["digraph G {", "  rankdir=TB;", '  node [fontname="monospace", fontsize=10];']
    if title:
        lines.append(f"  label={_quote(title)}; labelloc=t;")
    for i, v in enumerate(graph.inputs):
        label = f"{graph.input_names[i] if graph.input_names else ''} {names[v]}:{type_name(v)}"
        lines.append(f"  {names[v]} [shape=ellipse, label={_quote(label.strip())}];")
    phase_of = {}
    for node in graph.nodes:
        phase_of[node.out] = node.phase
        color = PHASE_COLORS.get(node.phase, "#e0e0e0")
        shape = "plaintext" if node.op == "const" else "box"
        style = "" if node.op == "const" else ', style=filled, fillcolor="' + color + '"'
        label = node_text(node, names)
        lines.append(f"  {names[node.out]} [shape={shape}{style}, label={_quote(label)}];")
        for v in node.inputs:
            crosses = phase_of.get(v) == "forward" and node.phase == "backward"
            attrs = f" [style=bold, label={_quote(type_name(v))}]" if crosses else ""
            lines.append(f"  {names[v]} -> {names[node.out]}{attrs};")
    for i, v in enumerate(graph.outputs):
        lines.append(f'  out{i} [shape=doublecircle, label="out{i}"];')
        lines.append(f"  {names[v]} -> out{i};")
    lines.append("}")
    return "\n".join(lines) + "\n"


__all__ = ["PHASE_COLORS", "to_dot", "to_text"]
