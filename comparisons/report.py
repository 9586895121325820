"""One self-contained HTML page over everything under runs/: curves, accuracy, compare, bench, IR.

`roadmap report [--runs runs/] [--out runs/report.html]`. Every input is read defensively: a
missing or unreadable file becomes a visible note on the page and the rest still renders. The
page loads nothing from the network: CSS is inline, charts are base64 SVG, and the IR dumps and
graph pictures are linked (or embedded, when small) with paths relative to the page.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from comparisons import report_plots as plots
from comparisons.report_plots import Html, Num, cell, esc, fw_badge, generic, num, slug, table

TOOL_DIRS = ("compare", "bench", "ir")
RUN_FILES = ("summary.json", "metrics.jsonl", "config.json")
MAX_CURVES_PER_FRAMEWORK = 4
# Nothing may load from the network; pictures come from data: URIs or files beside the page.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: file:"
CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
  margin: 0 auto; max-width: 1280px; padding: 0 1.5rem 4rem; }
h1 { margin-top: 1.5rem; } h2 { border-bottom: 2px solid #ddd; margin-top: 2.5rem; }
h3 { margin-top: 2rem; } h4 { margin: 1.4rem 0 .4rem; color: #444; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: 13.5px; }
th, td { border: 1px solid #ddd; padding: .25rem .55rem; vertical-align: top; text-align: left;
  white-space: nowrap; } .wrap { white-space: normal; display: inline-block; }
th { background: #f3f3f5; } tbody tr:nth-child(even) { background: #fafafa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.tw { overflow-x: auto; max-width: 100%; } table.kv table { margin: 0; }
code { font-size: 90%; background: #f3f3f5; padding: 0 .2em; }
.meta, .muted { color: #666; } .muted { font-size: 90%; }
.note { border-left: 4px solid #e0a800; background: #fff8e1; padding: .45rem .8rem; }
.note.error { border-color: #d93025; background: #fdecea; }
.fw { font-weight: 600; color: var(--fw); } .fw::before { content: "\\25CF  "; }
figure { margin: .5rem 0 1rem; } img.chart { max-width: 100%; height: auto; }
figure.graph img { max-width: 100%; max-height: 700px; border: 1px solid #ddd; }
.side { display: flex; flex-wrap: wrap; gap: 1.5rem; }
.side > div { flex: 1 1 0; min-width: 320px; } nav ul { list-style: none; padding-left: 0; }
nav li.toc3 { padding-left: 1.5rem; } details { margin: .5rem 0; } summary { cursor: pointer; }
"""
# Versions the page lists from the machine that builds it, beside those the files recorded.
LOCAL_PACKAGES = ("numpy", "jax", "jaxlib", "flax", "optax", "torch", "torchvision", "matplotlib")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `report`'s own flags (the CLI adds --workdir and --no-progress)."""
    parser.add_argument("--runs", help="folder holding the run outputs (default: --workdir)")
    parser.add_argument("--out", help="HTML file to write (default: <runs>/report.html)")


def run(args: argparse.Namespace) -> int:
    """`roadmap report`: write the page and print where it is."""
    runs_dir = Path(args.runs or getattr(args, "workdir", None) or "runs")
    out = Path(args.out) if args.out else runs_dir / "report.html"
    page = build_report(runs_dir, out)
    print(f"report written: {page}")
    return 0


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


def build_report(runs_dir: str | Path, out_path: str | Path) -> Path:
    """Render every project under `runs_dir` into the HTML file `out_path`; returns its path."""
    runs_dir, out_path = Path(runs_dir), Path(out_path)
    page = Page(runs_dir, out_path)
    body: list[str] = []
    if not runs_dir.is_dir():
        hint = "train something first, e.g. `roadmap compare <project> --epochs 1`"
        body.append(page.note(f"{runs_dir} not found: {hint}, then `roadmap report` again"))
    for name in _project_names(runs_dir):
        body.append(_project_section(page, name, runs_dir / name))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    document = _document(page, "\n".join(body))
    tmp = out_path.with_name(f".{out_path.name}.tmp{os.getpid()}")
    tmp.write_text(document, encoding="utf-8")
    os.replace(tmp, out_path)  # a browser tab reloading mid-write never sees half a page
    for _, text in page.notes:
        print(f"note: {text}", file=sys.stderr)
    return out_path


def _project_names(runs_dir: Path) -> list[str]:
    """Registered projects first (in registry order), then any other folder of results."""
    try:
        from comparisons.registry import list_projects

        names = [p.name for p in list_projects()]
    except Exception:  # noqa: BLE001 - the report must still render a tree of unknown projects
        names = []
    folders = runs_dir.iterdir() if runs_dir.is_dir() else []
    found = sorted(p.name for p in folders if p.is_dir() and not p.name.startswith("."))
    return [n for n in names if n in found] + [n for n in found if n not in names]


def _project_section(page: Page, name: str, pdir: Path) -> str:
    parts = [page.heading(2, slug(name), name)]
    parts.append(page.heading(3, f"{slug(name)}-runs", f"{name}: training runs"))
    parts.append(page.guard(f"{name} training runs", _runs_section, name, pdir))
    parts.append(page.heading(3, f"{slug(name)}-compare", f"{name}: JAX vs PyTorch (compare)"))
    parts.append(page.guard(f"{name} compare", _compare_section, name, pdir / "compare"))
    parts.append(page.heading(3, f"{slug(name)}-bench", f"{name}: benchmarks"))
    parts.append(page.guard(f"{name} bench", plots.bench_section, name, pdir / "bench"))
    parts.append(page.heading(3, f"{slug(name)}-ir", f"{name}: compiled IR"))
    parts.append(page.guard(f"{name} IR", plots.ir_section, name, pdir / "ir"))
    return f'<section class="project">{"".join(parts)}</section>'


def _read_metrics(page: Page, path: Path) -> tuple[list[dict[str, Any]], list[Html]]:
    """Rows of metrics.jsonl; unparsable lines (a torn last line) are skipped and counted."""
    if not path.is_file():
        return [], []
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
    note = f"{page.show(path)}: skipped {bad} unparsable line(s)"
    return rows, [page.note(note, error=True)] if bad else []


def _discover_runs(page: Page, pdir: Path) -> list[dict[str, Any]]:
    """Every run folder runs/<project>/<framework>/<run-id>/ with what it holds."""
    runs = []
    fdirs = [d for d in pdir.iterdir() if d.is_dir() and d.name not in TOOL_DIRS]
    for fdir in sorted(d for d in fdirs if not d.name.startswith(".")):
        for rdir in sorted(d for d in fdir.iterdir() if d.is_dir()):
            present = [rdir / f for f in RUN_FILES if (rdir / f).is_file()]
            if not present:
                continue
            metrics, notes = _read_metrics(page, rdir / "metrics.jsonl")
            loaded = {}
            for name in ("summary", "config"):
                data, note = page.load_json(rdir / f"{name}.json", missing="")
                loaded[name] = data if isinstance(data, dict) else {}
                notes += [note] if data is None and (rdir / f"{name}.json").is_file() else []
            if not (rdir / "summary.json").is_file():
                notes.append(Html('<span class="muted wrap">running or stopped: no summary</span>'))
            summary, config = loaded["summary"], loaded["config"]
            framework = config.get("framework") or summary.get("framework") or fdir.name
            mtime = max(p.stat().st_mtime for p in present)
            runs.append(dict(framework=str(framework), run_id=rdir.name, path=rdir, **loaded))
            runs[-1].update(metrics=metrics, notes=notes, mtime=mtime)
    return runs


def _history(run: dict[str, Any]) -> list[dict[str, Any]]:
    history = run["summary"].get("history")
    if isinstance(history, list) and history:
        return [h for h in history if isinstance(h, dict)]
    # No summary yet: rebuild the per-epoch records from metrics.jsonl (test/loss -> test_loss).
    epochs: dict[Any, dict[str, Any]] = {}
    for r in (r for r in run["metrics"] if r.get("split") in ("val", "test")):
        values = {
            f"{r['split']}_{k}": v for k, v in r.items() if k not in ("split", "step", "epoch")
        }
        epochs.setdefault(r.get("epoch"), {"epoch": r.get("epoch")}).update(values)
    return list(epochs.values())


def _project_metric(name: str) -> str:
    """The history key a project is judged by (the registry's `metric`, e.g. test_accuracy)."""
    try:
        from comparisons.registry import get_project

        return str(get_project(name).metric)
    except Exception:  # noqa: BLE001 - unknown folders are judged by accuracy
        return "test_accuracy"


def _runs_section(page: Page, name: str, pdir: Path) -> Html:
    runs, metric = _discover_runs(page, pdir), _project_metric(name)
    kind = "pct" if "accuracy" in metric else "f4"
    if not runs:
        return page.note(
            f"no training runs under {page.show(page.runs_dir / name)}: run "
            f"`roadmap run {name} --framework jax` (and torch), or `roadmap compare {name}`"
        )
    parts = []
    curves, shown = [], {}
    for run in sorted(runs, key=lambda r: r["mtime"], reverse=True):
        shown[run["framework"]] = shown.get(run["framework"], 0) + 1
        if shown[run["framework"]] > MAX_CURVES_PER_FRAMEWORK:
            continue
        curves.append(
            {
                "framework": run["framework"],
                "label": f"{run['framework']} {run['run_id']}",
                "train": [
                    (r.get("step"), r.get("loss"))
                    for r in run["metrics"]
                    if r.get("split") == "train"
                ],
                "test": [(h.get("epoch"), h.get(metric)) for h in _history(run)],
            }
        )
    curves.sort(key=lambda c: c["label"])
    draw = lambda c: plots.training_curves(c, metric)  # noqa: E731
    parts.append(plots.chart_figure(page, f"the {name} curves", draw, curves))
    if max(shown.values()) > MAX_CURVES_PER_FRAMEWORK:
        parts.append(
            f'<p class="muted">curves show the {MAX_CURVES_PER_FRAMEWORK} newest runs per '
            "framework; the table lists every run.</p>"
        )
    rows = []
    for run in sorted(runs, key=lambda r: (r["framework"], r["run_id"])):
        s, history = run["summary"], _history(run)
        last = history[-1] if history else {}
        planned = run["config"].get("epochs")
        epochs = f"{len(history)}" + (f"/{planned}" if planned and planned != len(history) else "")
        rows.append(
            [
                fw_badge(run["framework"]),
                page.link(run["path"], run["run_id"]),
                cell(run["config"].get("model")),
                Num(esc(epochs)),
                num(last.get(metric), kind),
                num(last.get("test_loss"), "f4"),
                num(s.get("train_examples_per_s"), "rate"),
                num(s.get("first_step_s"), "f2"),
                num(s.get("wall_s"), "f1"),
                num(s.get("num_params"), "int"),
            ]
            + ([Html(" ".join(run["notes"]))] if any(r["notes"] for r in runs) else [])
        )
    headers = ["framework", "run id", "model", "epochs", f"final {metric.replace('_', ' ')}"]
    headers += ["test loss"]
    headers += ["train examples/s", "first step (compile) s", "wall s", "params", "notes"]
    parts.append(table(headers[: len(rows[0])], rows))
    return Html("".join(parts))


_COMPARE_KNOWN = {"project", "run_id", "config", "date", "versions", "frameworks", "runs", "rows"}
_COMPARE_KNOWN |= {"initial_logits_max_abs_diff", "workdirs", "total_wall_s", "table", "out_dir"}


def _compare_section(page: Page, name: str, cdir: Path) -> Html:
    ids = sorted((d for d in cdir.iterdir() if d.is_dir()), reverse=True) if cdir.is_dir() else []
    if not ids:
        return page.note(f"no comparisons yet: run `roadmap compare {name}`")
    parts = []
    for d in ids:
        parts.append(f"<h4>{esc(d.name)}</h4>")
        missing = f"compare.json missing in {page.show(d)}: an interrupted compare?"
        data, note = page.load_dict(d / "compare.json", missing)
        parts.append(
            note if data is None else page.guard(f"compare {d.name}", _compare_one, d, data)
        )
    return Html("".join(parts))


def _compare_one(page: Page, cdir: Path, data: dict[str, Any]) -> Html:
    page.add_versions(f"compare {cdir.name}", data.get("versions"))
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    summaries = data.get("runs") if isinstance(data.get("runs"), dict) else {}
    frameworks = data.get("frameworks") or list(summaries)
    keys = ("model", "dataset", "epochs", "batch_size", "optimizer", "lr", "schedule", "seed")
    facts = [f"{k} {config[k]}" for k in keys if k in config]
    meta = [esc(data.get("date", "")), esc(", ".join(facts))]
    diff = data.get("initial_logits_max_abs_diff")
    if isinstance(diff, int | float):
        meta.append(f"same initial weights: max |logit diff| before training {diff:.2e}")
    links = [page.link(cdir / "compare.md")] if (cdir / "compare.md").is_file() else []
    workdirs = data.get("workdirs") if isinstance(data.get("workdirs"), dict) else {}
    for fw, path in workdirs.items():
        # Written relative to where compare ran; the runs folder's own layout is the fallback.
        tries = (Path(path), page.runs_dir.parent / path, cdir.parent.parent / fw / cdir.name)
        found = next((p for p in tries if p.is_dir()), None)
        links += [page.link(found, f"{fw} run")] if found else []
    parts = [f'<p class="meta">{" · ".join(m for m in meta if m)}</p>']
    if links:
        parts.append(f'<p class="meta">files: {" · ".join(links)}</p>')
    rows = data.get("rows")
    if not isinstance(rows, list):
        rows = _derive_rows(summaries)
        parts.append('<p class="muted">no "rows" in compare.json: derived from runs.</p>')
    frameworks = [str(f) for f in frameworks] or sorted(
        {k for r in rows for k in r if k not in ("metric", "kind")}
    )
    versus = set(frameworks) == {"jax", "torch"}
    headers = ["metric", *frameworks] + ["jax vs torch"] * versus
    body = []
    for row in (r for r in rows if isinstance(r, dict)):
        kind = row.get("kind", "auto")
        cells = [cell(row.get("metric")), *(num(row.get(fw), kind) for fw in frameworks)]
        if versus:
            cells.append(_versus(row.get("jax"), row.get("torch"), kind))
        body.append(cells)
    parts.append(table([fw_badge(h) if h in frameworks else h for h in headers], body))
    parts.append(plots.extras(data, _COMPARE_KNOWN))
    if config:
        parts.append(f"<details><summary>config</summary>{generic(config)}</details>")
    return Html("".join(parts))


def _versus(jax_value: Any, torch_value: Any, kind: str) -> Num:
    """Accuracy and loss as a difference (jax - torch); speeds and times as a ratio."""
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in (jax_value, torch_value)):
        return num(None)
    if kind in ("rate", "f2", "f1") and torch_value:
        return Num(f"{jax_value / torch_value:.2f}&times;")
    if kind == "pct":
        return Num(f"{100 * (jax_value - torch_value):+.2f} pp")
    if kind == "int":
        return Num("equal" if jax_value == torch_value else f"{jax_value - torch_value:+,}")
    return Num(f"{jax_value - torch_value:+.4f}")


def _derive_rows(summaries: dict[str, Any]) -> list[dict[str, Any]]:
    """compare.json without rows: per-epoch and whole-run rows from runs.*.history."""
    summaries = {fw: s for fw, s in summaries.items() if isinstance(s, dict)}
    histories = {fw: s.get("history") or [] for fw, s in summaries.items()}
    rows = []
    for e in range(max((len(h) for h in histories.values()), default=0)):
        for key, kind in (("test_accuracy", "pct"), ("test_loss", "f4"), ("train_loss", "f4")):
            row = {"metric": f"epoch {e + 1} {key.replace('_', ' ')}", "kind": kind}
            for fw, h in histories.items():
                row[fw] = h[e].get(key) if e < len(h) and isinstance(h[e], dict) else None
            rows.append(row)
    run_keys = {"train_examples_per_s": "rate", "first_step_s": "f2", "num_params": "int"}
    for key, kind in (run_keys | {"wall_s": "f2"}).items():
        rows.append({"metric": key, "kind": kind} | {fw: s.get(key) for fw, s in summaries.items()})
    return rows


def _local_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in LOCAL_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _document(page: Page, body: str) -> str:
    local = _local_versions()
    rows = []
    for name in sorted(set(page.versions) | set(local)):
        recorded = page.versions.get(name, {})
        text = "; ".join(
            f"{value} ({', '.join(sources)})" if len(recorded) > 1 else value
            for value, sources in recorded.items()
        )
        rows.append([esc(name), esc(text), esc(local.get(name, ""))])
    versions = table(["package", "recorded in the result files", "this machine (report)"], rows)
    toc = "".join(
        f'<li class="toc{level}"><a href="#{esc(anchor)}">{esc(title)}</a></li>'
        for level, anchor, title in page.toc
    )
    notes = ""
    if page.notes:
        items = "".join(f'<li><a href="#{a}">{esc(t)}</a></li>' for a, t in page.notes)
        summary = f"{len(page.notes)} note(s) on this page: missing or unreadable inputs"
        notes = f'<details class="notes"><summary>{summary}</summary><ul>{items}</ul></details>'
    date = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>roadmap report</title>
<style>{CSS}</style>
</head><body>
<header><h1>roadmap report</h1>
<p class="meta">generated {esc(date)} from <code>{esc(str(page.runs_dir.resolve()))}</code></p>
{notes}
<div class="side"><nav><h2>contents</h2><ul>{toc}</ul></nav>
<div><h2>versions</h2>{versions}</div></div></header>
<main>{body}</main>
</body></html>
"""
