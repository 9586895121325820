"""The HTML building blocks of `roadmap report`: cells, tables, formatting and the shared Page.

Everything here returns `Html` (markup already safe to place in the page); anything else that
reaches a cell is escaped. Nothing here imports matplotlib.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any


class Html(str):
    """Markup that is already safe to place in the page."""


class Num(Html):
    """A formatted number: its table column is right-aligned."""


def esc(value: Any) -> Html:
    """`value` as escaped text."""
    return Html(html.escape(str(value)))


def slug(text: str) -> str:
    """An anchor id made of `text`."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def num(value: Any, kind: str = "auto") -> Num:
    """A number formatted by `kind`: pct, f1, f2, f4, int, rate, sci or auto; None is n/a."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return Num('<span class="muted">n/a</span>' if value is None else esc(value))
    if not math.isfinite(value):
        return Num(esc(value))
    if kind == "pct":
        return Num(f"{100 * value:.2f}%")
    if kind == "int" or (kind == "auto" and isinstance(value, int)):
        return Num(f"{int(value):,}")
    if kind in ("f1", "f2", "f4"):
        return Num(f"{value:,.{kind[1]}f}")
    if kind == "sci" or (kind == "auto" and abs(value) >= 1e7):  # FLOP counts, not bytes
        return Num(f"{value:.2e}")
    if kind == "rate" or (kind == "auto" and abs(value) >= 1000):
        return Num(f"{value:,.0f}")
    if value and abs(value) < 1e-3:
        return Num(f"{value:.2e}")
    return Num(f"{value:.4g}")


def cell(value: Any) -> Html:
    """One table cell's content: markup as is, numbers formatted, anything else escaped."""
    if isinstance(value, Html):
        return value
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return num(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        if len(value) > 4 or sum(len(str(v)) for v in value) > 80:  # long: one item a line
            return Html(
                '<ul class="wrap">' + "".join(f"<li>{esc(v)}</li>" for v in value) + "</ul>"
            )
        value = ", ".join(map(str, value))
    elif isinstance(value, dict | list):
        return generic(value)
    text = str(value)
    # Cells do not wrap (modes, names, paths stay whole); only long prose may.
    return Html(f'<span class="wrap">{esc(text)}</span>') if len(text) > 40 else esc(text)


def table(headers: list[Any], rows: list[list[Any]], cls: str = "") -> Html:
    """A <table>: numbers right-aligned, and the header of an all-number column too."""
    cells = [[cell(v) for v in row] for row in rows]
    numeric = [
        any(i < len(r) and str(r[i]) for r in cells)
        and all(isinstance(r[i], Num) for r in cells if i < len(r) and str(r[i]))
        for i in range(len(headers))
    ]
    num_class = ' class="num"'
    head = "".join(
        f"<th{num_class * n}>{cell(h)}</th>" for h, n in zip(headers, numeric, strict=True)
    )
    body = "".join(
        "<tr>" + "".join(f"<td{num_class * isinstance(c, Num)}>{c}</td>" for c in r) + "</tr>"
        for r in cells
    )
    # The wrapper scrolls sideways, so a wide table never widens the page.
    return Html(
        f'<div class="tw"><table class="{cls}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def generic(value: Any, depth: int = 0) -> Html:
    """Any JSON value: a dict as a key/value table, a list of dicts as a table, else text."""
    if depth > 3:
        return Html(f"<code>{esc(json.dumps(value, default=str)[:2000])}</code>")
    if isinstance(value, dict):
        if not value:
            return Html('<span class="muted">empty</span>')
        rows = [[esc(k), _nested(v, depth)] for k, v in value.items()]
        return table(["key", "value"], rows, cls="kv")
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        keys = list(dict.fromkeys(k for v in value for k in v))
        return table(keys, [[_nested(v.get(k), depth) for k in keys] for v in value])
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return Html(f"<code>{esc(json.dumps(value, default=str)[:2000])}</code>")
    return cell(value)


def _nested(value: Any, depth: int) -> Html:
    return generic(value, depth + 1) if isinstance(value, dict | list) else cell(value)


# One colour per framework everywhere on the page (PyTorch's orange, a JAX blue).
FRAMEWORK_COLORS = {"jax": "#1a73e8", "torch": "#ee4c2c"}
_OTHER_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#17becf", "#7f7f7f")


def framework_color(framework: str) -> str:
    """The colour of `framework` on every chart (unknown frameworks get a stable other colour)."""
    if framework in FRAMEWORK_COLORS:
        return FRAMEWORK_COLORS[framework]
    return _OTHER_COLORS[sum(map(ord, framework)) % len(_OTHER_COLORS)]


def fw_badge(framework: Any) -> Html:
    """The framework's name in its chart colour."""
    color = framework_color(str(framework))
    return Html(f'<span class="fw" style="--fw:{color}">{esc(framework)}</span>')


def column_kind(key: str, columns: dict[str, str]) -> str:
    """How to format column `key`: as `columns` says, else by its name's ending."""
    if key in columns:
        return columns[key]
    for ending, kind in _KIND_BY_ENDING:
        if key.endswith(ending) or key.startswith(ending):
            return kind
    return "auto"


_KIND_BY_ENDING = (("_ms", "f2"), ("gflops", "f1"), ("peak_fraction", "pct"), ("_per_s", "rate"))
_KIND_BY_ENDING += (("jax_over_", "f2"), ("flops", "sci"), ("_s", "f2"))


def records_table(records: list[Any], columns: dict[str, str], skip: tuple = ()) -> Html:
    """A table of dict rows: the `columns` present ({key: num kind}) first, then unknown keys."""
    records = [r for r in records if isinstance(r, dict)]
    keys = [k for k in columns if any(k in r for r in records)]
    keys += [k for k in dict.fromkeys(k for r in records for k in r) if k not in keys]
    keys = [k for k in keys if k not in skip and columns.get(k) != "skip"]
    rows = [
        [
            fw_badge(r[k])
            if k == "framework" and k in r
            else num(r.get(k), column_kind(k, columns))
            if isinstance(r.get(k), int | float | None) and not isinstance(r.get(k), bool)
            else cell(r.get(k))
            for k in keys
        ]
        for r in records
    ]
    return table([k.replace("_", " ") for k in keys], rows)


def chart_figure(page, what: str, draw, rows: Any) -> Html:
    """`draw(rows)` in a <figure>; a drawing failure becomes a note and the tables still render."""
    chart = page.guard(what, lambda _page: draw(rows) or "")
    return Html(f"<figure>{chart}</figure>" if chart.startswith("<img") else chart)


def meta(page, source: str, data: dict, links: list, facts: dict[str, str], folded=()) -> Html:
    """The line under a section heading: links, then `facts` ({key: label}) the file holds."""
    page.add_versions(source, data.get("versions"))
    items = links + [
        esc(f"{label}{data[k]}") for k, label in facts.items() if data.get(k) is not None
    ]
    out = f'<p class="meta">{" · ".join(items)}</p>'
    for key in (k for k in folded if isinstance(data.get(k), dict)):
        out += f"<details><summary>{key}</summary>{generic(data[key])}</details>"
    return Html(out)


def extras(data: dict[str, Any], known: set[str]) -> Html:
    """Every key no renderer knows, under its own heading: new fields show up unasked."""
    unknown = {k: v for k, v in data.items() if k not in known and v not in (None, {}, [], "")}
    headed = (f"<h4>{esc(k.replace('_', ' '))}</h4>{generic(v)}" for k, v in unknown.items())
    return Html("".join(headed))


def error_items(errors: Any) -> list[tuple[str, Any]]:
    """(where, message) pairs from an "errors" value: a dict, a list or one string."""
    if isinstance(errors, dict):
        return [(str(k), v) for k, v in errors.items() if v]
    if isinstance(errors, list):
        return [(str(i + 1), v) for i, v in enumerate(errors) if v]
    return [("error", errors)] if errors else []


class Page:
    """What the sections share: where the page lives, notes, versions seen and the contents."""

    def __init__(self, runs_dir: Path, out_path: Path):
        self.runs_dir, self.out_path = runs_dir, out_path
        self.notes: list[tuple[str, str]] = []  # (anchor id, text)
        self.versions: dict[str, dict[str, list[str]]] = {}  # package -> value -> sources
        self.toc: list[tuple[int, str, str]] = []  # (level, anchor id, title)

    def heading(self, level: int, anchor: str, title: str) -> Html:
        """An <hN> with an anchor, listed in the table of contents."""
        self.toc.append((level, anchor, title))
        return Html(f'<h{level} id="{esc(anchor)}">{esc(title)}</h{level}>')

    def note(self, text: str, error: bool = False) -> Html:
        """A visible note about a missing or unreadable input; also listed at the top."""
        anchor = f"note-{len(self.notes) + 1}"
        self.notes.append((anchor, text))
        kind = "note error" if error else "note"
        return Html(f'<p class="{kind}" id="{anchor}">{esc(text)}</p>')

    def rel(self, path: Path) -> str:
        """`path` as seen from the page, percent-quoted for an href."""
        target = os.path.relpath(Path(path).resolve(), self.out_path.resolve().parent)
        return urllib.parse.quote(Path(target).as_posix())

    def link(self, path: Path, text: str | None = None) -> Html:
        """A relative link to a file or folder next to the page."""
        return Html(f'<a href="{self.rel(path)}">{esc(text or Path(path).name)}</a>')

    def show(self, path: Path) -> str:
        """`path` relative to the runs folder's parent, for messages."""
        try:
            return Path(path).resolve().relative_to(self.runs_dir.resolve().parent).as_posix()
        except ValueError:
            return str(path)

    def load_dict(self, path: Path, missing: str) -> tuple[dict[str, Any] | None, Html]:
        """Like load_json, for files that must hold a JSON object."""
        data, note = self.load_json(path, missing)
        if data is None or isinstance(data, dict):
            return data, note
        return None, self.note(f"{self.show(path)}: not a JSON object", error=True)

    def load_json(self, path: Path, missing: str) -> tuple[Any, Html]:
        """(data, "") or (None, a note saying `missing` or why the file could not be parsed)."""
        if not path.is_file():
            return None, self.note(missing) if missing else Html("")
        try:
            return json.loads(path.read_text(encoding="utf-8")), Html("")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            return None, self.note(f"could not parse {self.show(path)}: {err}", error=True)

    def add_versions(self, source: str, versions: Any) -> None:
        """Remember the versions a file recorded (a flat {package: version} dict)."""
        if isinstance(versions, dict):
            for name, value in versions.items():
                if isinstance(value, str | int | float):
                    seen = self.versions.setdefault(str(name), {}).setdefault(str(value), [])
                    seen.append(source)

    def guard(self, what: str, render, *args) -> Html:
        """Run one section renderer; an exception becomes a note instead of a broken page."""
        kept = len(self.notes)
        try:
            return render(self, *args)
        except Exception as err:  # noqa: BLE001 - any schema surprise must not lose the page
            del self.notes[kept:]  # their anchors went with the failed section
            return self.note(f"could not render {what}: {type(err).__name__}: {err}", error=True)
