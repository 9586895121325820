"""`roadmap report`'s layer-by-layer IR diff: ir/ir_diff.json, one table per phase.

Each row is a layer (or the glue after it, the loss, the optimizer); its first cell expands
(<details>) to both frameworks' ops and kernels side by side.
"""

from __future__ import annotations

from typing import Any

from comparisons.report.html import Html, esc, fw_badge, num, table


def _ops_list(cell: dict[str, Any] | None) -> str:
    if not cell:
        return '<p class="muted">no ops</p>'
    ops = ", ".join(f"{esc(op)}{f' x{n}' if n > 1 else ''}" for op, n in cell["ops"].items())
    kernels = "".join(f"<li><code>{esc(k)}</code></li>" for k in cell.get("kernels") or [])
    inferred = cell.get("inferred_kernels") or 0
    note = f'<p class="muted">{inferred} kernel(s) placed by inference</p>' if inferred else ""
    return f"<p>{ops or '-'}</p>" + (f"<ul>{kernels}</ul>" if kernels else "") + note


def _row_cell(row: str, entry: dict[str, Any], sides: list[str]) -> Html:
    columns = "".join(f"<div>{fw_badge(s)}{_ops_list(entry.get(s))}</div>" for s in sides)
    return Html(
        f'<details><summary>{esc(row)}</summary><div class="side">{columns}</div></details>'
    )


def _value(cell: dict[str, Any] | None, key: str, kind: str = "auto") -> Html:
    if not cell:
        return Html("")
    value = sum(cell["ops"].values()) if key == "n" else cell.get(key)
    return num(value if value else None, kind)


def ir_diff_section(page, name: str, path) -> Html:
    """The aligned tables of `roadmap ir diff`, phase by phase, rows expandable."""
    data, missing = page.load_dict(path, f"{path.name} missing: run `roadmap ir diff {name}`")
    if data is None:
        return missing
    sides = [str(s) for s in data.get("sides", [])]
    parts = [f'<p class="meta">{esc(data.get("title", ""))} · {page.link(path)}</p>']
    gaps = data.get("flops_mismatch")
    if gaps:
        parts.append(page.note(f"matmul/conv FLOPs differ in: {', '.join(gaps)}"))
    headers: list[Any] = ["layer (expand: ops and kernels)"]
    kinds = data.get("time_kind") or {}  # which step each side's time is from
    for label, _ in (("ops", "n"), ("FLOPs", "flops"), ("bytes", "bytes"), ("time us", "time_us")):
        for s in sides:
            kind = f" ({kinds[s]})" if label == "time us" and kinds.get(s) else ""
            headers.append(Html(f"{fw_badge(s)} {esc(label + kind)}"))
    for phase, rows in (data.get("tables") or {}).items():
        body = []
        for entry in rows:
            row = [_row_cell(str(entry.get("row")), entry, sides)]
            for key, kind in (("n", "int"), ("flops", "sci"), ("bytes", "int"), ("time_us", "f1")):
                row += [_value(entry.get(s), key, kind) for s in sides]
            body.append(row)
        parts += [f"<h4>{esc(phase)}</h4>", table(headers, body)]
    notes = "".join(f"<li>{esc(n)}</li>" for n in data.get("notes") or [])
    parts.append(f'<ul class="muted">{notes}</ul>' if notes else "")
    return Html("".join(parts))
