"""`roadmap report`'s IR section: op categories side by side, costs, dump files and graphs."""

from __future__ import annotations

import base64
from pathlib import PurePosixPath
from typing import Any

from comparisons.report.html import (
    FRAMEWORK_COLORS,
    Html,
    cell,
    error_items,
    esc,
    extras,
    fw_badge,
    generic,
    meta,
    records_table,
    table,
)

IR_WHATS = ("forward", "train_step")
EMBED_MAX_BYTES = 512 * 1024  # larger graph pictures are linked, not copied into the page
_IR_KNOWN = {"project", "versions", "frameworks", "errors", "config", "device", "created"}
_IR_KNOWN |= {"model", "batch_size", "setup_failed", "comparison", "files"}


def ir_frameworks(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{framework: {what: entry}} from ir.json: under "frameworks", or framework keys at the top."""
    found = data.get("frameworks")
    found = (
        found if isinstance(found, dict) else {k: data[k] for k in FRAMEWORK_COLORS if k in data}
    )
    return {str(k): v for k, v in found.items() if isinstance(v, dict)}


def ir_section(page, name: str, idir) -> Html:
    """runs/<project>/ir/ir.json: op categories side by side, costs, dump files and graphs."""
    path = idir / "ir.json"
    data, missing = page.load_dict(path, f"ir.json missing: run `roadmap ir {name}`")
    if data is None:
        return missing
    links = [page.link(p) for p in (path, idir / "ir.md") if p.is_file()]
    facts = {"created": "", "model": "model ", "batch_size": "batch ", "device": "device "}
    parts = [meta(page, "ir", data, links, facts, ("config",))]
    per_fw = ir_frameworks(data)
    if not per_fw:
        parts.append(page.note(f"{page.show(path)}: no framework entries", error=True))
    # Top-level errors repeat the steps' own (shown in their columns); keep only the others.
    entries = [e for fws in per_fw.values() for e in fws.values() if isinstance(e, dict)]
    step_errors = {str(m) for e in entries for _, m in error_items(_errors_of(e))}
    for key, err in error_items(data.get("errors")):
        if str(err) not in step_errors:
            parts.append(page.note(f"ir error: {key}: {err}", error=True))
    whats = list(dict.fromkeys(w for entries in per_fw.values() for w in entries))
    whats.sort(key=lambda w: IR_WHATS.index(w) if w in IR_WHATS else len(IR_WHATS))
    comparison = data.get("comparison") if isinstance(data.get("comparison"), dict) else {}
    for what in whats:
        entries = {fw: e[what] for fw, e in per_fw.items() if isinstance(e.get(what), dict)}
        parts.append(f"<h4>{esc(what)}</h4>")
        for fw, entries_of_fw in per_fw.items():
            if what in entries_of_fw and fw not in entries:
                parts.append(page.note(f"ir {fw} {what}: {entries_of_fw[what]}", error=True))
        parts.append(_ir_what(page, idir, entries, comparison.get(what)))
    parts.append(extras(data, _IR_KNOWN | set(per_fw)))
    return Html("".join(parts))


def _errors_of(entry: dict[str, Any]) -> Any:
    return entry.get("errors") or entry.get("error")


def _categories(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{column: {category: count}}: the whole step, then each traced part (forward, backward...)."""
    out = {}
    for key, value in entry.items():
        if "categor" in key and isinstance(value, dict):
            nested = {k: v for k, v in value.items() if isinstance(v, dict)}
            out.update(nested or {"": value})
    parts = entry.get("parts") if isinstance(entry.get("parts"), dict) else {}
    for part, stats in parts.items():
        if isinstance(stats, dict) and isinstance(stats.get("op_categories"), dict):
            out[part] = stats["op_categories"]
    return out


_IR_SKIP = {"files", "errors", "error", "notes", "op_categories", "categories"}
_IR_SKIP_NESTED = {"step.saved", "eager_saved.saved"}  # tabled by _saved_values / in ir.json
_IR_DETAIL = {"ops", "parts"}  # long per-op listings: folded away under the tables


def _measures(value: dict[str, Any], prefix: str, scalars: dict, details: dict) -> None:
    """Split an IR entry into flat scalar measures ("memory.temp_bytes") and bulky details."""
    for k, v in value.items():
        key = f"{prefix}{k}"
        if (not prefix and k in _IR_SKIP) or key in _IR_SKIP_NESTED:
            continue
        if "categor" in key or v in ({}, []):
            continue
        nested = isinstance(v, list) and any(isinstance(x, dict | list) for x in v)
        listing = k in _IR_DETAIL or k.endswith("_ops") or len(v) > 12 if isinstance(v, dict) else 0
        if listing or nested:
            details[key] = v
        elif isinstance(v, dict):
            _measures(v, f"{key}.", scalars, details)
        else:
            scalars[key] = v


def _ir_what(page, idir, entries: dict[str, dict[str, Any]], comparison: Any) -> Html:
    """One step (forward or train_step) of every framework: tables side by side, then files."""
    parts = []
    if isinstance(comparison, dict):  # op categories are in the table below already
        checks = [{"check": k} | v for k, v in comparison.items() if isinstance(v, dict)]
        checks = [c for c in checks if "categor" not in c["check"]]
        parts.append(records_table(checks, {"check": "auto", "rel_diff": "pct"}) if checks else "")
    columns = {(fw, s): counts for fw, e in entries.items() for s, counts in _categories(e).items()}
    if columns:
        cats = list(dict.fromkeys(c for counts in columns.values() for c in counts))
        headers = ["op category"] + [Html(f"{fw_badge(fw)} {esc(stage)}") for fw, stage in columns]
        rows = [[esc(c)] + [cell(counts.get(c)) for counts in columns.values()] for c in cats]
        parts.append(table(headers, rows))
    scalars: dict[str, dict] = {fw: {} for fw in entries}
    details: dict[str, dict] = {fw: {} for fw in entries}
    for fw, entry in entries.items():
        _measures(entry, "", scalars[fw], details[fw])
    keys = sorted({k for values in scalars.values() for k in values})
    if keys:
        rows = [[esc(k)] + [cell(scalars[fw].get(k, "")) for fw in entries] for k in keys]
        parts.append(table(["measure", *(fw_badge(fw) for fw in entries)], rows))
    parts.append(_saved_values(entries))
    columns_html = []
    for fw, entry in entries.items():
        errors = error_items(_errors_of(entry))
        html_ = "".join(page.note(f"ir {fw}: {where}: {err}", error=True) for where, err in errors)
        notes = entry.get("notes") if isinstance(entry.get("notes"), list) else []
        html_ += "".join(f'<p class="muted">{fw_badge(fw)} {esc(n)}</p>' for n in notes)
        if details[fw]:
            more = ", ".join(details[fw])
            html_ += f"<details><summary>{fw} details: {esc(more)}</summary>"
            html_ += f"{generic(details[fw])}</details>"
        links, pictures = _ir_files(page, idir, entry.get("files"))
        html_ += f"<p>{fw_badge(fw)} files: {' · '.join(links)}</p>" if links else ""
        columns_html.append(f"<div>{html_}{''.join(pictures)}</div>" if html_ else "")
    # Side by side, like the tables: the graphs of one step can be read across.
    parts.append(f'<div class="side">{"".join(columns_html)}</div>')
    return Html("".join(parts))


def _saved_values(entries: dict[str, dict[str, Any]]) -> Html:
    """What each framework's forward saves for its backward, side by side, in death order."""
    from comparisons.ir.step import in_death_order, saved_summary

    columns = []
    for fw, entry in entries.items():
        record = entry.get("step")
        if not isinstance(record, dict) or not isinstance(record.get("saved"), list):
            continue
        try:
            rows = [
                {k: s[k] for k in ("name", "made_by", "kind", "type", "nbytes", "last_op")}
                for s in in_death_order(record)
            ]
            summary = saved_summary(record)
        except (KeyError, TypeError) as err:
            columns.append(f"<div>{fw_badge(fw)} step record unreadable: {esc(repr(err))}</div>")
            continue
        table_html = records_table(rows, {"nbytes": "int"})
        columns.append(f"<div><p>{fw_badge(fw)} {esc(summary)}</p>{table_html}</div>")
    if not columns:
        return Html("")
    head = "<h5>Saved for the backward (bold edges of train_step.whole.svg)</h5>"
    return Html(f'{head}<div class="side">{"".join(columns)}</div>')


def _ir_files(page, idir, files: Any) -> tuple[list[Html], list[Html]]:
    """Links to every dump file, and the graph pictures (SVG) to show."""
    if not isinstance(files, dict | list):
        return [], []
    links, pictures = [], []
    for key, item in files.items() if isinstance(files, dict) else enumerate(files):
        if isinstance(item, dict):  # {"path": ..., "name": ...} entries
            key, item = item.get("name") or key, item.get("path") or item.get("file")
        if not isinstance(item, str):
            continue
        found = _resolve(page, idir, item)
        label = key if isinstance(key, str) else PurePosixPath(item).name
        if found is None:
            links.append(Html(f'<span class="muted">{esc(label)} (missing)</span>'))
            continue
        links.append(page.link(found, label))
        if found.suffix.lower() == ".svg":
            pictures.append(_picture(page, found, label))
    return links, pictures


def _resolve(page, idir, name: str):
    from pathlib import Path

    candidate = Path(name)
    tries = [candidate] if candidate.is_absolute() else [idir / name, page.runs_dir / name]
    tries += [] if candidate.is_absolute() else [page.runs_dir.parent / name, candidate]
    return next((p for p in tries if p.is_file()), None)


def _picture(page, path, label: str) -> Html:
    """An SVG graph: copied into the page when small, else loaded from its relative path."""
    if path.stat().st_size <= EMBED_MAX_BYTES:
        src = "data:image/svg+xml;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    else:
        src = page.rel(path)
    return Html(
        f'<figure class="graph"><a href="{page.rel(path)}"><img loading="lazy" src="{src}" '
        f'alt="{esc(label)}"></a><figcaption>{esc(label)}</figcaption></figure>'
    )
