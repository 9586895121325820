"""The charts of `roadmap report`: training curves, throughput and op microbenchmarks.

Charts are drawn on `matplotlib.figure.Figure` objects directly (no pyplot, no global backend
state) and embedded as base64 SVG <img> tags with text as paths, so the page needs no fonts
and scales without blur. matplotlib is imported on first use: `roadmap --help` must not pay.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from typing import Any

from comparisons.report.html import _finite, framework_color

_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P")


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
