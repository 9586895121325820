"""Dataflow pictures of `roadmap ir`: Graphviz source, rendered to SVG by a pip-installed `dot`.

The renderer is `graphviz-pure` (a dependency in pyproject.toml: a Rust port of Graphviz 16.1,
EPL-2.0 like Graphviz, wheels for Linux x86_64/aarch64, macOS and Windows), so a plain
`pip install` draws every picture with no system package; a system Graphviz `dot` serves
where the wheel does not exist. Without either, only the `.dot` source is written and the
section says why. Nothing here imports jax or torch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from comparisons.ir.opmap import CATEGORIES

_PALETTE = ("#f4a582", "#92c5de", "#b8e186", "#e0e0e0", "#d7b5d8", "#fee090")
COLORS = dict(zip(CATEGORIES, _PALETTE, strict=True))
RENDERER_ENV = "ROADMAP_GRAPHVIZ"  # force a renderer: "graphviz-pure", "dot" or a path


def svg_renderers() -> list[list[str]]:
    """Commands that turn Graphviz source on stdin into SVG, best first.

    First `graphviz-pure`, a wheel-installed Rust port of Graphviz 16.1 that `pip install`
    brings on Linux, macOS and Windows (a pinned version: the same picture on every machine),
    then a system Graphviz `dot` (apt-get install graphviz), which also serves platforms the
    wheel does not cover. $ROADMAP_GRAPHVIZ picks one.
    """
    forced = os.environ.get(RENDERER_ENV)
    names = [forced] if forced else ["graphviz-pure", "dot"]
    # The running interpreter's scripts folder first: pip puts graphviz-pure there, and it
    # need not be on PATH (a venv used without activating it).
    folders = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable)]
    commands = []
    for name in names:
        exe = next((shutil.which(name, path=f) for f in folders if f), None) or shutil.which(name)
        if exe is not None:
            commands.append([exe, "-Tsvg"])
    return commands


def render_svg(source: str, timeout: float = 120.0) -> tuple[bytes | None, str]:
    """SVG bytes of Graphviz `source` from the first renderer that succeeds, and what happened."""
    failures = []
    for command in svg_renderers():
        name = Path(command[0]).name
        try:
            done = subprocess.run(command, input=source.encode(), capture_output=True,
                                  timeout=timeout)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as err:
            failures.append(f"{name}: {type(err).__name__}")
            continue
        if done.returncode == 0 and done.stdout.lstrip().startswith((b"<?xml", b"<svg")):
            return done.stdout, name
        failures.append(f"{name}: exit {done.returncode}: {done.stderr.decode()[:200].strip()}")
    if not failures:
        return None, "no Graphviz renderer (pip install graphviz-pure, or apt-get install graphviz)"
    return None, "; ".join(failures)


def draw_graph(
    nodes: list[dict[str, Any]],
    edges: list[tuple[str, str]],
    stem: Path,
    title: str,
    max_nodes: int = 120,
    *,
    render: bool = True,
) -> dict[str, Any]:
    """Draw a dataflow graph to `stem`.dot and `stem`.svg; caps op nodes at `max_nodes`.

    `nodes`: dicts with id, label, kind ("input", "output" or "op") and category (for ops),
    in topological order. Returns the files written, a note (cap applied), an error (no
    renderer worked: .dot only) and the renderer used. `render=False` writes the .dot source
    only (`roadmap ir --no-pictures`).
    """
    import graphviz  # builds the source only; rendering is render_svg's job

    ops = [n for n in nodes if n["kind"] == "op"]
    kept_ops = {n["id"] for n in ops[:max_nodes]}
    used = {a for a, b in edges if b in kept_ops} | {b for a, b in edges if a in kept_ops}
    note = ""
    if len(ops) > max_nodes:
        note = f"{len(ops) - max_nodes} of {len(ops)} ops not drawn (cap {max_nodes}); see the text"
    graph = graphviz.Digraph(name=stem.name, graph_attr={"rankdir": "TB", "fontsize": "12"})
    graph.attr(label=f"{title}{chr(10) + note if note else ''}", labelloc="t")
    graph.attr("node", fontname="Helvetica", fontsize="9", style="filled")
    kept = set()
    for n in nodes:
        if n["kind"] == "op" and n["id"] not in kept_ops:
            continue
        if n["kind"] != "op" and n["id"] not in used:
            continue
        kept.add(n["id"])
        if n["kind"] == "op":
            color = COLORS.get(n.get("category", ""), "#ffffff")
            graph.node(n["id"], n["label"], shape="box", fillcolor=color)
        else:
            graph.node(n["id"], n["label"], shape="ellipse", fillcolor="#ffffff")
    for a, b in dict.fromkeys(edges):
        if a in kept and b in kept:
            graph.edge(a, b)
    if note:
        graph.node("_more", f"... {note}", shape="note", fillcolor="#ffffcc")
    with graph.subgraph(name="cluster_legend") as legend:
        legend.attr(label="categories", fontsize="9")
        for cat in CATEGORIES:
            legend.node(f"_legend_{cat}", cat, shape="box", fillcolor=COLORS[cat])
    return write_picture(graph.source, stem, note, render)


def write_picture(source: str, stem: Path, note: str, render: bool = True) -> dict[str, Any]:
    """Write Graphviz `source` to `stem`.dot and, rendered, `stem`.svg (`render=False`: .dot only).

    Returns the files written, `note` as given, an error (no renderer worked: .dot only) and
    the renderer used: what draw_graph and step.draw_step return.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    dot_path, svg_path = stem.parent / f"{stem.name}.dot", stem.parent / f"{stem.name}.svg"
    dot_path.write_text(source, encoding="utf-8")
    if not render:
        return {"files": [dot_path.name], "note": note, "error": None, "renderer": None}
    svg, renderer = render_svg(source)
    if svg is None:
        error = f"no SVG ({renderer}): wrote .dot only"
        return {"files": [dot_path.name], "note": note, "error": error, "renderer": None}
    svg_path.write_bytes(svg)
    files = [dot_path.name, svg_path.name]
    return {"files": files, "note": note, "error": None, "renderer": renderer}
