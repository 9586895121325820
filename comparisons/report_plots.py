"""The building blocks of `roadmap report`: HTML cells and tables, and matplotlib charts.

Charts are drawn on `matplotlib.figure.Figure` objects directly (no pyplot, no global backend
state) and embedded as base64 SVG <img> tags with text as paths, so the page needs no fonts
and scales without blur. matplotlib is imported on first use: `roadmap --help` must not pay.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Iterable
from pathlib import PurePosixPath
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
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P")


def framework_color(framework: str) -> str:
    """The colour of `framework` on every chart (unknown frameworks get a stable other colour)."""
    if framework in FRAMEWORK_COLORS:
        return FRAMEWORK_COLORS[framework]
    return _OTHER_COLORS[sum(map(ord, framework)) % len(_OTHER_COLORS)]


def _figure(width: float, height: float, ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, list(axes)


def figure_html(fig, alt: str) -> str:
    """Serialise `fig` as an <img> holding a base64 SVG data URI (self-contained, id-safe)."""
    import matplotlib

    buf = io.BytesIO()
    # Text as paths: the page then renders identically without any font installed.
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "roadmap"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="chart" alt="{html.escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def training_curves(runs: list[dict[str, Any]], metric: str = "test_accuracy") -> str | None:
    """Train loss per logged step and the project's metric per epoch, every run overlaid.

    Each run is {"framework", "label", "train": [(step, loss)], "test": [(epoch, metric)]};
    frameworks keep their colour, runs within a framework differ by line style and marker.
    """
    from matplotlib.ticker import PercentFormatter

    runs = [r for r in runs if r["train"] or r["test"]]
    if not runs:
        return None
    fig, (loss_ax, acc_ax) = _figure(11, 4, ncols=2)
    seen: dict[str, int] = {}
    positive = True
    for run in runs:
        k = seen[run["framework"]] = seen.get(run["framework"], -1) + 1
        style = {
            "color": framework_color(run["framework"]),
            "linestyle": _LINESTYLES[k % len(_LINESTYLES)],
            "label": run["label"],
        }
        train = [(x, y) for x, y in run["train"] if _finite(x) and _finite(y)]
        test = [(x, y) for x, y in run["test"] if _finite(x) and _finite(y)]
        if train:
            positive = positive and all(y > 0 for _, y in train)
            loss_ax.plot(*zip(*train, strict=True), linewidth=1.4, **style)
        if test:
            acc_ax.plot(
                *zip(*test, strict=True), marker=_MARKERS[k % len(_MARKERS)], linewidth=1.4, **style
            )
    loss_ax.set(title="train loss (epoch running mean, per logged step)", xlabel="step")
    if positive and loss_ax.lines:
        loss_ax.set_yscale("log")  # losses span decades; a log axis keeps the tail readable
    acc_ax.set(title=f"{metric.replace('_', ' ')} per epoch", xlabel="epoch")
    if "accuracy" in metric:
        acc_ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    epochs = sorted({x for line in acc_ax.lines for x in line.get_xdata()})
    if len(epochs) == 1:  # one point: keep the axis from inventing fractional epochs
        acc_ax.set_xticks(epochs)
    else:
        acc_ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in (loss_ax, acc_ax):
        if ax.lines:
            ax.legend(fontsize="small")
    return figure_html(fig, f"training curves: train loss and {metric.replace('_', ' ')}")


def _series(row: dict[str, Any]) -> tuple[str, str]:
    """(framework, label) of a bench row; bench modes often already name their framework."""
    framework, mode = str(row.get("framework", "?")), str(row.get("mode", ""))
    return framework, mode if mode.startswith(framework) else f"{framework} {mode}".strip()


def _mode_style(label: str, modes: list[str]) -> dict[str, Any]:
    """Eager modes dashed, compiled ones solid: compiled is compared with compiled."""
    k = modes.index(label)
    return {"linestyle": "--" if "eager" in label else "-", "marker": _MARKERS[k % len(_MARKERS)]}


def throughput_chart(results: Iterable[dict[str, Any]]) -> str | None:
    """Examples/s against batch size, one panel per `what` (train, infer), one line per mode."""
    panels: dict[str, dict[tuple[str, str], list[tuple[float, float]]]] = {}
    for row in results:
        x, y = row.get("batch_size"), row.get("examples_per_s")
        if _finite(x) and _finite(y) and y > 0:
            series = panels.setdefault(str(row.get("what", "")), {})
            series.setdefault(_series(row), []).append((x, y))
    if not panels:
        return None
    order = sorted(panels, key=lambda w: (w not in ("train", "infer"), w != "train", w))
    fig, axes = _figure(5.5 * len(order), 4, ncols=len(order))
    modes = sorted({label for series in panels.values() for _, label in series})
    for ax, what in zip(axes, order, strict=True):
        for (framework, label), points in sorted(panels[what].items()):
            points.sort()
            style = _mode_style(label, modes)
            ax.plot(
                *zip(*points, strict=True), color=framework_color(framework), label=label, **style
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set(title=f"{what or 'results'}: examples/s by batch size", xlabel="batch size")
        ax.set_ylabel("examples/s")
        ax.legend(fontsize="small")
    return figure_html(fig, "throughput: examples per second against batch size")


def op_chart(ops: Iterable[dict[str, Any]]) -> str | None:
    """Horizontal grouped bars: each op's median ms per (framework, mode), log scale."""
    values: dict[str, dict[tuple[str, str], float]] = {}
    for row in ops:
        ms = row.get("median_ms")
        if _finite(ms) and ms > 0:
            values.setdefault(str(row.get("op", "?")), {})[_series(row)] = ms
    if not values:
        return None
    op_names = list(values)
    series = sorted({key for per_op in values.values() for key in per_op})
    height = 0.8 / len(series)
    fig, (ax,) = _figure(9, 1.2 + 0.35 * len(op_names) * max(1, len(series) / 2))
    compiled_seen: dict[str, int] = {}
    for i, (framework, label) in enumerate(series):
        ys = [j + (i - (len(series) - 1) / 2) * height for j in range(len(op_names))]
        ms = [values[op].get((framework, label), 0.0) for op in op_names]
        k = compiled_seen[framework] = compiled_seen.get(framework, -1) + ("eager" not in label)
        hatch = "//" if "eager" in label else ("", "..", "xx")[k % 3]  # eager hatched
        color = framework_color(framework)
        ax.barh(ys, ms, height=height, color=color, hatch=hatch, edgecolor="white", label=label)
    ax.set_yticks(range(len(op_names)), op_names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set(title="op microbenchmarks: median time per call (lower is better)", xlabel="ms")
    ax.legend(fontsize="small")
    return figure_html(fig, "op microbenchmarks: median milliseconds per framework and mode")


def chart_figure(page, what: str, draw, rows: Any) -> Html:
    """`draw(rows)` in a <figure>; a drawing failure becomes a note and the tables still render."""
    chart = page.guard(what, lambda _page: draw(rows) or "")
    return Html(f"<figure>{chart}</figure>" if chart.startswith("<img") else chart)


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


def op_rows(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Op results as one row per (op, mode): bench_ops' wide rows (<mode>_ms columns) unfolded."""
    rows = []
    for row in ops:
        if "median_ms" in row:
            rows.append(row)
            continue
        for key, ms in row.items():
            if key.endswith("_ms") and not key.endswith(("_p10_ms", "_p90_ms")):
                mode = key[: -len("_ms")]
                rows.append(
                    {"op": row.get("op"), "framework": mode.split("_")[0], "mode": mode}
                    | {"median_ms": ms, "gflops": row.get(f"{mode}_gflops")}
                )
    return rows


BENCH_COLUMNS = dict.fromkeys(("what", "mode", "framework"), "auto") | {"batch_size": "int"}
BENCH_COLUMNS |= dict.fromkeys(("median_ms", "p10_ms", "p90_ms"), "f2") | {"compile_s": "f2"}
BENCH_COLUMNS |= {"examples_per_s": "rate", "flops_per_step": "sci", "gflops": "f1"}
BENCH_COLUMNS |= {"peak_fraction": "pct"}
_BENCH_KNOWN = {"project", "device", "versions", "peak_gflops", "results", "ratios", "ops"}
_BENCH_KNOWN |= {"errors", "date", "steps", "warmup", "machine", "config"}


def bench_section(page, name: str, bdir) -> Html:
    """runs/<project>/bench/bench.json: peak, throughput charts and tables, op microbenchmarks."""
    path = bdir / "bench.json"
    data, missing = page.load_dict(path, f"bench.json missing: run `roadmap bench {name}`")
    if data is None:
        return missing
    facts = {"date": "", "device": "device ", "steps": "timed steps ", "warmup": "warm-up steps "}
    parts = [meta(page, "bench", data, [page.link(path)], facts, ("machine", "config"))]
    ops = [r for r in data.get("ops") or [] if isinstance(r, dict)]
    # Op failures are also copied to the top-level errors: show them once, beside the op table.
    op_errors = {str(m) for r in ops for _, m in error_items(r.get("errors"))}
    for key, err in error_items(data.get("errors")):
        if str(err) not in op_errors:
            parts.append(page.note(f"bench error: {key}: {err}", error=True))
    peak = data.get("peak_gflops")
    if isinstance(peak, dict) and peak:
        parts.append("<h4>matmul peak (GFLOP/s, fp32)</h4>")
        parts.append(table(list(peak), [[num(v, "f1") for v in peak.values()]]))
    results = [r for r in data.get("results") or [] if isinstance(r, dict)]
    if results:
        results.sort(key=_result_order)
        parts.append("<h4>throughput (compilation excluded)</h4>")
        parts.append(chart_figure(page, f"the {name} throughput chart", throughput_chart, results))
        parts.append(records_table(results, BENCH_COLUMNS))
    else:
        parts.append(page.note(f"{page.show(path)}: no results"))
    if data.get("ratios"):
        columns = {"what": "auto", "batch_size": "int", "comparison": "auto"} | BENCH_COLUMNS
        parts.append("<h4>ratios</h4>" + _records_or_generic(data["ratios"], columns))
    if ops:
        parts.append("<h4>op microbenchmarks</h4>")
        long = op_rows(ops)
        parts.append(chart_figure(page, f"the {name} op microbenchmark chart", op_chart, long))
        for row in ops:
            for key, err in error_items(row.get("errors")):
                parts.append(page.note(f"op {row.get('op')}: {key}: {err}", error=True))
        parts.append(records_table(ops, _op_columns(ops), ("errors", "flops_formula")))
        formulas = {r["op"]: r["flops_formula"] for r in ops if r.get("flops_formula")}
        if formulas:
            text = "; ".join(f"{op}: {formula}" for op, formula in formulas.items())
            parts.append(f'<p class="muted">FLOPs counted as {esc(text)}</p>')
    parts.append(extras(data, _BENCH_KNOWN))
    return Html("".join(parts))


def _result_order(row: dict[str, Any]) -> tuple:
    """Train before infer, then mode, framework and batch size."""
    batch = row["batch_size"] if _finite(row.get("batch_size")) else 0
    what = {"train": 0, "infer": 1}.get(row.get("what"), 2)
    return (what, *(str(row.get(k)) for k in ("what", "mode", "framework")), batch)


def _op_columns(ops: list[dict[str, Any]]) -> dict[str, str]:
    """Op table columns: op, shape, FLOPs, then per mode ms / GFLOP/s / peak, then ratios."""
    modes = [k[: -len("_ms")] for r in ops for k in r if k.endswith("_ms") and "_p" not in k]
    columns = {"op": "auto", "framework": "auto", "mode": "auto", "shape": "auto", "flops": "sci"}
    for mode in sorted(dict.fromkeys(modes), key=lambda m: (m != "jax", m)):
        columns |= {f"{mode}_ms": "f2", f"{mode}_gflops": "f1", f"{mode}_peak_fraction": "pct"}
    columns |= {k: "f2" for r in ops for k in r if k.startswith("jax_over_")}
    # The p10/p90 spread stays in bench.json: the table keeps one time per mode.
    return columns | {k: "skip" for r in ops for k in r if k.endswith(("_p10_ms", "_p90_ms"))}


def _records_or_generic(value: Any, columns: dict[str, str]) -> Html:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return records_table(value, columns)
    return generic(value)


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


def _errors_of(entry: dict[str, Any]) -> Any:
    return entry.get("errors") or entry.get("error")


def error_items(errors: Any) -> list[tuple[str, Any]]:
    """(where, message) pairs from an "errors" value: a dict, a list or one string."""
    if isinstance(errors, dict):
        return [(str(k), v) for k, v in errors.items() if v]
    if isinstance(errors, list):
        return [(str(i + 1), v) for i, v in enumerate(errors) if v]
    return [("error", errors)] if errors else []


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
_IR_DETAIL = {"ops", "parts"}  # long per-op listings: folded away under the tables


def _measures(value: dict[str, Any], prefix: str, scalars: dict, details: dict) -> None:
    """Split an IR entry into flat scalar measures ("memory.temp_bytes") and bulky details."""
    for k, v in value.items():
        key = f"{prefix}{k}"
        if (not prefix and k in _IR_SKIP) or "categor" in key or v in ({}, []):
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
