"""One training step as one picture, and what its forward saves for its backward.

Three systems build the same `StepGraph`: the toy engine (comparisons/autodiff.py), JAX
(forward and VJP residuals from `jax.vjp`, the backward's jaxpr, the update's jaxpr;
comparisons/ir/jax_ir.py) and torch (AOTAutograd's forward, backward and optimizer graphs;
comparisons/ir/torch_ir.py). Every op node carries its phase (forward, backward, update) and
is coloured by it; an edge that carries a saved value from the forward into the backward is
drawn bold and labelled with the value's type and size. The saved-values table lists each
value, who made it, its size and the backward op after which nothing reads it any more
(where it dies), with the saved bytes still live after that op. Nothing here imports jax or
torch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from comparisons.ir.pictures import write_picture
from shared_data.byhand.autodiff.dot import PHASE_COLORS

PHASES = ("forward", "backward", "update")
KINDS = ("activation", "parameter", "input")  # what a saved value is
DEFAULT_MAX_OPS = 600  # a whole Adam step of the VAE in torch (foreach update) is ~430 ops


@dataclasses.dataclass
class Saved:
    """One value the forward hands to the backward."""

    node: str  # id of the node (or input) that made it, in StepGraph.nodes
    name: str  # what the framework calls it
    made_by: str  # producing op, or the input it is
    kind: str  # activation (new memory), parameter or input (live anyway)
    type: str  # f32[8,256]
    nbytes: int
    last_use: int | None = None  # index of the backward op that reads it last
    last_op: str = ""  # that op's name


@dataclasses.dataclass
class StepGraph:
    """Nodes (id, label, kind input|op|output, phase), edges (src, dst, label) and saved values.

    `backward_ops` lists the backward op ids in execution order, so `Saved.last_use` indexes it.
    """

    nodes: list[dict[str, Any]]
    edges: list[tuple[str, str, str | None]]
    saved: list[Saved]
    backward_ops: list[str]

    def saved_bytes(self, kind: str | None = None) -> int:
        """Bytes of the saved values (of one kind, or all)."""
        return sum(s.nbytes for s in self.saved if kind is None or s.kind == kind)

    def dead_bytes(self) -> int:
        """Bytes of saved activations the backward never reads (an optimizer's DCE drops them)."""
        return sum(s.nbytes for s in self.saved if s.kind == "activation" and s.last_use is None)

    def live_after(self) -> list[int]:
        """Saved activation bytes still live after each backward op (the curve of their frees)."""
        n = len(self.backward_ops)
        frees = [0] * n
        for s in self.saved:
            if s.kind == "activation" and s.last_use is not None:
                frees[s.last_use] += s.nbytes
        live, out = self.saved_bytes("activation") - self.dead_bytes(), []
        for freed in frees:
            live -= freed
            out.append(live)
        return out

    def summary(self) -> dict[str, Any]:
        """The ir.json record: counts per phase, saved bytes per kind, every saved value."""
        per_phase = {p: sum(1 for n in self.nodes if n.get("phase") == p) for p in PHASES}
        return {
            "ops_per_phase": per_phase,
            "saved_bytes": {k: self.saved_bytes(k) for k in KINDS},
            "never_read_bytes": self.dead_bytes(),
            "saved_count": len(self.saved),
            "backward_ops": len(self.backward_ops),
            "saved": [dataclasses.asdict(s) for s in self.saved],
        }


def last_uses(backward_ops: list[str], reads: dict[str, set[str]]) -> dict[str, int]:
    """For each value id read by the backward: the index of the last backward op reading it.

    `reads[op_id]` is the set of value ids the op reads; ops are in execution order.
    """
    last: dict[str, int] = {}
    for i, op in enumerate(backward_ops):
        for value in reads.get(op, ()):
            last[value] = i
    return last


def human_bytes(n: int | None) -> str:
    """1536 -> '1.5 KiB'."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(step: StepGraph, title: str, max_ops: int = DEFAULT_MAX_OPS) -> tuple[str, str]:
    """Graphviz source of the step (phases as clusters) and a note when ops were left out."""
    ops = [n for n in step.nodes if n["kind"] == "op"]
    kept_ops = {n["id"] for n in ops[:max_ops]}
    note = (
        f"{len(ops) - max_ops} of {len(ops)} ops not drawn (cap {max_ops})"
        if len(ops) > max_ops
        else ""
    )
    used = {a for a, b, _ in step.edges if b in kept_ops} | {
        b for a, b, _ in step.edges if a in kept_ops
    }
    kept = {
        n["id"]
        for n in step.nodes
        if n["id"] in kept_ops or (n["kind"] != "op" and n["id"] in used)
    }
    lines = [
        "digraph step {",
        "  rankdir=TB; fontsize=12; labelloc=t;",
        f"  label={_quote(title + (chr(10) + note if note else ''))};",
        '  node [fontname="Helvetica", fontsize=9, style=filled];',
        '  edge [fontname="Helvetica", fontsize=8];',
    ]
    for phase in (None, *PHASES):
        members = [n for n in step.nodes if n["id"] in kept and n.get("phase") == phase]
        if not members:
            continue
        indent = "  "
        if phase is not None:
            lines += [f"  subgraph cluster_{phase} {{", f"    label={_quote(phase)}; color=grey;"]
            indent = "    "
        for n in members:
            if n["kind"] == "op":
                color = PHASE_COLORS.get(n.get("phase", ""), "#e0e0e0")
                attrs = f'shape=box, fillcolor="{color}"'
            elif n["kind"] == "output":
                attrs = 'shape=doublecircle, fillcolor="#ffffff"'
            else:
                attrs = 'shape=ellipse, fillcolor="#ffffff"'
            lines.append(f"{indent}{_quote(n['id'])} [{attrs}, label={_quote(n['label'])}];")
        if phase is not None:
            lines.append("  }")
    for a, b, label in dict.fromkeys(step.edges):
        if a in kept and b in kept:
            extra = f' [style=bold, color="#b2182b", label={_quote(label)}]' if label else ""
            lines.append(f"  {_quote(a)} -> {_quote(b)}{extra};")
    lines.append("}")
    return "\n".join(lines) + "\n", note


def draw_step(
    step: StepGraph, stem: Path, title: str, max_ops: int = DEFAULT_MAX_OPS, *, render=True
) -> dict:
    """Write `stem`.dot and `stem`.svg (`render=False`: .dot only); returns what draw_graph does."""
    source, note = to_dot(step, title, max_ops)
    return write_picture(source, stem, note, render)


def saved_label(saved: Saved) -> str:
    """The label of a forward -> backward edge: type and size."""
    return f"{saved.type} {human_bytes(saved.nbytes)}"


def in_death_order(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The saved values of a StepGraph.summary() in the order the backward lets them die."""
    return sorted(record["saved"], key=lambda s: (s["last_use"] is None, s["last_use"] or 0))


def saved_summary(record: dict[str, Any]) -> str:
    """One sentence: how many values, bytes per kind, backward ops, dead residuals."""
    b = record["saved_bytes"]
    text = (
        f"Saved: {record['saved_count']} values; activations {human_bytes(b['activation'])}, "
        f"parameters {human_bytes(b['parameter'])}, inputs {human_bytes(b['input'])}; "
        f"backward ops {record['backward_ops']}."
    )
    if record.get("never_read_bytes"):
        text += (
            f" {human_bytes(record['never_read_bytes'])} of the activations are never read by the "
            "backward: dead residuals, which dead-code elimination drops from the compiled step."
        )
    return text


def saved_markdown(record: dict[str, Any], max_rows: int = 30) -> str:
    """The saved-values table of one StepGraph.summary(): in the order they die."""
    saved = in_death_order(record)
    n = record["backward_ops"]
    live = sum(
        s["nbytes"] for s in saved if s["kind"] == "activation" and s["last_use"] is not None
    )
    rows = []
    for s in saved:
        if s["kind"] == "activation" and s["last_use"] is not None:
            live -= s["nbytes"]
        dies = (
            "never read" if s["last_use"] is None else f"{s['last_use'] + 1}/{n} `{s['last_op']}`"
        )
        rows.append(
            f"| `{s['name']}` | {s['made_by']} | {s['kind']} | `{s['type']}` | "
            f"{human_bytes(s['nbytes'])} | {dies} | {human_bytes(live)} |"
        )
    head = [
        "| saved value | made by | kind | type | size | dies after backward op | "
        "activations still live |",
        "|---|---|---|---|---:|---|---:|",
    ]
    more = len(rows) - max_rows
    rows = rows[:max_rows] + ([f"| ... {more} more (ir.json) | | | | | | |"] if more > 0 else [])
    return "\n".join([saved_summary(record), "", *head, *rows])


def step_markdown(entries: dict[str, dict[str, Any]]) -> list[str]:
    """ir.md's section: saved bytes per framework, the checks, then each saved-values table.

    `entries` maps framework -> its ir.json train_step entry (with "step", and the checks:
    JAX's XLA memory analysis, torch's eager saved tensors).
    """
    records = {fw: e["step"] for fw, e in entries.items() if isinstance(e.get("step"), dict)}
    if not records:
        return []
    fws = list(records)

    def row(label, get):
        return f"| {label} | " + " | ".join(get(fw) for fw in fws) + " |"

    def saved(kind):
        return lambda fw: human_bytes(records[fw]["saved_bytes"][kind])

    read = lambda fw: human_bytes(  # noqa: E731
        records[fw]["saved_bytes"]["activation"] - records[fw].get("never_read_bytes", 0)
    )

    def xla(fw):
        memory = entries[fw].get("memory", {})
        temp, peak = memory.get("xla_temp_bytes"), memory.get("xla_peak_bytes")
        args, outs = memory.get("xla_argument_bytes"), memory.get("xla_output_bytes")
        text = f"temp buffers {human_bytes(temp)}"
        if None not in (peak, args, outs):
            text += f"; peak {human_bytes(peak)} = arguments {human_bytes(args)} + "
            text += f"{human_bytes(peak - args)} more (outputs {human_bytes(outs)})"
        return text

    eager = lambda fw: (entries[fw].get("eager_saved") or {}).get("summary", "-")  # noqa: E731
    out = [
        "## Saved for the backward",
        "",
        "`*/train_step.whole.svg` draws the step as one graph, coloured by phase; every bold "
        "edge carries a value the forward saved for the backward. JAX: `jax.vjp`'s residuals; "
        "torch: the AOTAutograd backward graph's inputs (a view counts its base once). "
        "Activations are new memory; saved parameters and inputs are live anyway.",
        "",
        "| | " + " | ".join(fws) + " |",
        "|---|" + "---:|" * len(fws),
        row("saved activations the backward reads", read),
        row(
            "saved activations never read",
            lambda fw: human_bytes(records[fw].get("never_read_bytes", 0)),
        ),  # fmt: skip
        row("saved parameters", saved("parameter")),
        row("saved inputs", saved("input")),
        row("backward ops", lambda fw: str(records[fw]["backward_ops"])),
        row(
            "check: XLA memory analysis of the compiled step",
            lambda fw: xla(fw) if fw == "jax" else "-",
        ),
        row(
            "check: eager autograd's saved tensors", lambda fw: eager(fw) if fw == "torch" else "-"
        ),
        "",
    ]
    for fw in fws:
        out += [f"### {fw}: what the forward saves, in the order the backward lets it die", ""]
        out += [saved_markdown(records[fw]), ""]
    return out
