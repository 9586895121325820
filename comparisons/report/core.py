"""One self-contained HTML page over everything under runs/: curves, accuracy, compare, bench, IR.

`roadmap report [--runs runs/] [--out runs/report.html]`. Every input is read defensively: a
missing or unreadable file becomes a visible note on the page and the rest still renders. The
page loads nothing from the network: CSS is inline, charts are base64 SVG, and the IR dumps and
graph pictures are linked (or embedded, when small) with paths relative to the page.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from comparisons.env import versions as package_versions
from comparisons.report import bench as report_bench
from comparisons.report import ir as report_ir
from comparisons.report import runs as report_runs
from comparisons.report.html import Page, esc, slug, table

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
div.images { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-end; }
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
    parts.append(page.guard(f"{name} training runs", report_runs.runs_section, name, pdir))
    parts.append(page.heading(3, f"{slug(name)}-compare", f"{name}: JAX vs PyTorch (compare)"))
    parts.append(page.guard(f"{name} compare", report_runs.compare_section, name, pdir / "compare"))
    parts.append(page.heading(3, f"{slug(name)}-bench", f"{name}: benchmarks"))
    parts.append(page.guard(f"{name} bench", report_bench.bench_section, name, pdir / "bench"))
    parts.append(page.heading(3, f"{slug(name)}-ir", f"{name}: compiled IR"))
    parts.append(page.guard(f"{name} IR", report_ir.ir_section, name, pdir / "ir"))
    if (pdir / "ir" / "ir_diff.json").is_file():  # `roadmap ir diff`: optional, no note if absent
        from comparisons.report.ir_diff import ir_diff_section

        parts.append(page.heading(3, f"{slug(name)}-ir-diff", f"{name}: IR diff by layer"))
        diff_json = pdir / "ir" / "ir_diff.json"
        parts.append(page.guard(f"{name} IR diff", ir_diff_section, name, diff_json))
    return f'<section class="project">{"".join(parts)}</section>'


def _local_versions() -> dict[str, str]:
    return package_versions(LOCAL_PACKAGES)


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
