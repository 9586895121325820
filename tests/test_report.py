"""`roadmap report`: the page's structure, its self-containment, a real browser, and bad inputs."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from report_fixtures import (
    BIG_SVG_BYTES,
    COMPARE_ID,
    MLP_RUN_ID,
    PROJECT,
    make_runs_tree,
    write_compare,
)

from comparisons import report
from comparisons.report import html as report_html
from comparisons.report import ir as report_ir
from comparisons.report import plots as report_plots


class PageParser(HTMLParser):
    """Collects headings, tables (header cells and their alignment), images, links and notes."""

    def __init__(self):
        super().__init__()
        self.headings, self.tables, self.images, self.links, self.notes = [], [], [], [], []
        self.tags, self._text, self._in = set(), [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "table":
            self.tables.append([])
        if tag in ("h1", "h2", "h3", "h4", "th") or "note" in (attrs.get("class") or "").split():
            self._in, self._text = (tag, attrs.get("class") or ""), []
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        if tag == "a":
            self.links.append(attrs.get("href") or "")

    def handle_data(self, data):
        if self._in:
            self._text.append(data)

    def handle_endtag(self, tag):
        if not self._in or tag != self._in[0]:
            return
        text = " ".join("".join(self._text).split())
        if tag == "th":
            self.tables[-1].append((text, "num" in self._in[1]))
        elif tag == "p":
            self.notes.append(text)
        else:
            self.headings.append(text)
        self._in = None


def parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fixture tree and the report built from it (built once: charts take a second)."""
    runs = make_runs_tree(tmp_path_factory.mktemp("report"))
    with pytest.MonkeyPatch.context() as patch:
        # Below the fixture's one large graph: that one is linked by a relative path.
        patch.setattr(report_ir, "EMBED_MAX_BYTES", BIG_SVG_BYTES)
        return runs, report.build_report(runs, runs / "report.html")


def headers(page: PageParser) -> dict[str, bool]:
    """Every table header cell, and whether it is right-aligned."""
    return {text: right for table in page.tables for text, right in table}


def test_sections_tables_and_figures(built):
    runs, out = built
    page = parse(out)
    for heading in ("roadmap report", PROJECT, f"{PROJECT}: training runs", "train_step"):
        assert heading in page.headings
    for heading in ("compare", "benchmarks", "compiled IR", "op microbenchmarks"):
        assert any(heading in h for h in page.headings), heading
    cols = headers(page)
    # The accuracy table, with its numeric columns right-aligned and text columns not.
    for col in ("final test accuracy", "test loss", "train examples/s", "wall s", "params"):
        assert cols[col] is True, col
    assert cols["framework"] is False and cols["run id"] is False
    for col in ("metric", "jax vs torch", "median ms", "examples per s", "op category", "measure"):
        assert col in cols, col
    text = out.read_text()
    assert "99.03%" in text and "98.91%" in text and "+0.12 pp" in text
    charts = [s for s in page.images if s.startswith("data:image/svg+xml;base64,")]
    # Curves of two recipes (the CNN runs, the MLP run), throughput, ops; three small graph
    # pictures embedded.
    assert len(charts) == 4 + 3
    assert "<b>recipe</b>: model cnn, epochs 2" in text and "model mlp, epochs 1" in text
    assert [s for s in page.images if not s.startswith("data:")] == [
        "mnist/ir/torch/train_step.svg"
    ]
    assert page.notes == []  # every input is there: nothing to warn about
    # The table of contents links every project section.
    assert {"#mnist", "#mnist-runs", "#mnist-compare", "#mnist-bench", "#mnist-ir"} <= set(
        page.links
    )


def test_self_contained_and_links_resolve(built):
    runs, out = built
    text, page = out.read_text(), parse(out)
    assert not page.tags & {"script", "link", "iframe", "object", "embed"}
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "@import" not in text and "url(" not in text
    for href in (h for h in page.links if not h.startswith("#")):
        assert (out.parent / unquote(href)).exists(), href
    linked = {Path(unquote(h)).name for h in page.links}
    assert {"forward.jaxpr.txt", "train_step.stablehlo.mlir", "forward.torchscript.txt"} <= linked
    assert {"train_step.svg", "train_step.dot", "compare.md", "bench.json", "ir.json"} <= linked


CHECK_SCRIPT = """<script>
window.__errors = [];
addEventListener("error", e => __errors.push("error: " + (e.message ||
  (e.target && (e.target.src || e.target.href) || "").slice(0, 80))), true);
document.addEventListener("securitypolicyviolation",
  e => __errors.push("csp: " + e.violatedDirective + " " + e.blockedURI));
for (const k of ["error", "warn"]) {
  const f = console[k];
  console[k] = (...a) => { __errors.push(k + ": " + a.join(" ")); f.apply(console, a); };
}
addEventListener("load", () => {
  for (const img of document.images)
    if (!(img.complete && img.naturalWidth > 0)) __errors.push("broken image: " + img.alt);
  const out = document.createElement("pre");
  out.id = "__check";
  out.textContent = JSON.stringify({errors: __errors, images: document.images.length,
    tables: document.querySelectorAll("table").length});
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str | None:
    return next(
        (p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None
    )


def test_renders_in_headless_chromium(built, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("chromium not installed (CI installs it with apt-get install chromium)")
    runs, out = built
    # Hooks before the page's own content; lazy loading off so every picture must load now.
    checked = out.with_name("report_checked.html")
    html = out.read_text().replace("<head>", "<head>" + CHECK_SCRIPT, 1)
    checked.write_text(html.replace(' loading="lazy"', ""))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    proc = subprocess.run(
        [browser, *flags, "--dump-dom", checked.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    match = re.search(r'<pre id="__check">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"the page did not finish loading:\n{proc.stdout[:1000]}\n{proc.stderr[-2000:]}"
    check = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert check["errors"] == []
    assert check["tables"] == len(parse(out).tables) and check["images"] >= 7
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    assert "final test accuracy" in proc.stdout and "op microbenchmarks" in proc.stdout


def test_missing_and_malformed_inputs_become_notes(tmp_path, capsys):
    runs = make_runs_tree(tmp_path)
    pdir = runs / PROJECT
    (pdir / "ir" / "ir.json").unlink()
    (pdir / "bench" / "bench.json").write_text('{"results": [')
    (pdir / "compare" / COMPARE_ID / "compare.json").write_text("not json")
    (pdir / "compare" / "20261129-000000").mkdir()  # an interrupted compare: no compare.json
    with open(pdir / "torch" / COMPARE_ID / "metrics.jsonl", "a") as f:
        f.write('{"split": "train", "st')  # a torn last line
    (pdir / "jax" / COMPARE_ID / "summary.json").write_text("[1, 2")
    (pdir / "jax" / MLP_RUN_ID / "summary.json").unlink()  # a run still going, or killed
    (runs / "vae").mkdir()  # a project with no results yet
    out = report.build_report(runs, tmp_path / "elsewhere" / "report.html")
    notes = "\n".join(parse(out).notes)
    assert f"ir.json missing: run `roadmap ir {PROJECT}`" in notes
    assert f"could not parse runs/{PROJECT}/bench/bench.json" in notes
    assert f"could not parse runs/{PROJECT}/compare/{COMPARE_ID}/compare.json" in notes
    assert "compare.json missing in" in notes
    assert "metrics.jsonl: skipped 1 unparsable line(s)" in notes
    assert f"could not parse runs/{PROJECT}/jax/{COMPARE_ID}/summary.json" in notes
    assert "no training runs under runs/vae" in notes and "`roadmap bench vae`" in notes
    # The rest of the page still renders, and the notes are listed at the top.
    page = parse(out)
    assert "final test accuracy" in headers(page) and page.images
    # Runs without a readable summary.json still show their accuracy, rebuilt from metrics.jsonl.
    text = out.read_text()
    assert "99.03%" in text and "97.65%" in text and "running or stopped" in text
    assert "note(s) on this page" in out.read_text()
    assert "could not parse" in capsys.readouterr().err


def test_schema_surprises_render_generically(tmp_path, monkeypatch):
    runs = make_runs_tree(tmp_path)
    pdir = runs / PROJECT
    bench = json.loads((pdir / "bench" / "bench.json").read_text())
    bench["errors"] = {"torch-compile/train/bs512": "torch.compile unavailable: no compiler"}
    bench["new_section"] = {"answer": 42, "nested": [{"a": 1, "b": "x"}]}
    # The brief's long op layout (one row per op and mode) renders as well as bench_ops' wide one.
    bench["ops"] = [
        {"op": "conv2d dW", "framework": fw, "mode": mode, "median_ms": ms, "gflops": 6.0}
        for fw, mode, ms in (("jax", "jit", 469.0), ("torch", "eager", 150.0))
    ]
    op_error = "conv2d dW torch_compile failed: no compiler"
    bench["ops"][1]["errors"] = {"torch_compile": op_error}
    bench["errors"]["ops/conv2d dW/torch_compile"] = op_error  # bench.py copies it up
    (pdir / "bench" / "bench.json").write_text(json.dumps(bench))
    ir = json.loads((pdir / "ir" / "ir.json").read_text())
    ir["frameworks"]["torch"]["train_step"] = "torch.export failed: data-dependent shape"
    (pdir / "ir" / "ir.json").write_text(json.dumps(ir))
    summaries = {
        fw: json.loads((pdir / fw / COMPARE_ID / "summary.json").read_text())
        for fw in ("jax", "torch")
    }
    write_compare(runs, summaries, with_rows=False)
    monkeypatch.setattr(report_plots, "op_chart", lambda ops: 1 / 0)
    out = report.build_report(runs, runs / "report.html")
    page, text = parse(out), out.read_text()
    notes = "\n".join(page.notes)
    assert "bench error: torch-compile/train/bs512: torch.compile unavailable" in notes
    assert "ir torch train_step: torch.export failed" in notes
    assert "could not render the mnist op microbenchmark chart: ZeroDivisionError" in notes
    assert "op microbenchmarks" in page.headings and "conv2d dW" in text  # its table stays
    assert "op conv2d dW: torch_compile: conv2d dW torch_compile failed" in notes
    assert notes.count("torch_compile failed") == 1  # shown once, beside its op
    assert "new section" in page.headings and "answer" in text
    assert "epoch 1 test accuracy" in text  # rows derived from runs.*.history
    assert "train_step" in page.headings  # the IR section still renders jax's entry


def test_cli_arguments_and_missing_runs_dir(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="runs")
    report.add_arguments(parser)
    args = parser.parse_args(["--workdir", str(tmp_path / "none")])
    assert report.run(args) == 0
    out = tmp_path / "none" / "report.html"
    assert "not found" in "\n".join(parse(out).notes)
    assert str(out) in capsys.readouterr().out


def test_number_formats_and_alignment():
    assert report_html.num(0.99031, "pct") == "99.03%"
    assert report_html.num(1_199_882) == "1,199,882"
    assert report_html.num(6312.4, "rate") == "6,312"
    assert report_html.num(3.1e9) == "3.10e+09"
    assert "n/a" in report_html.num(None)
    table = report_html.table(["name", "value"], [["a<b", 1.5], ["c", None]])
    assert "a&lt;b" in table and '<th class="num">value</th>' in table


def test_runs_with_different_headlines_are_each_judged_by_their_own(tmp_path):
    from comparisons.cli import main

    for model in ("linear", "softmax"):
        argv = ["run", "regression", "--framework", "jax", "--variant", "smoke", "--model", model]
        assert main([*argv, "--run-id", model, "--workdir", str(tmp_path), "--no-progress"]) == 0
    html = report.build_report(tmp_path, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "final test headline" in html
    for model, metric in (("linear", "test_mse"), ("softmax", "test_accuracy")):
        summary = json.loads((tmp_path / "regression" / "jax" / model / "summary.json").read_text())
        value = summary["history"][-1][metric]
        shown = f"{100 * value:.2f}%" if metric == "test_accuracy" else f"{value:.4f}"
        assert f"{metric.removeprefix('test_')} {shown}" in html, (model, shown)


def test_re_evaluations_are_listed_and_a_broken_one_is_a_note(tmp_path):
    from comparisons.cli import main

    argv = ["run", "regression", "--framework", "torch", "--variant", "smoke", "--run-id", "r1"]
    assert main([*argv, "--workdir", str(tmp_path), "--no-progress"]) == 0
    run = tmp_path / "regression" / "torch" / "r1"
    assert main(["evaluate", "regression", "--framework", "torch", "--workdir", str(tmp_path),
                 "--set", "eval_batch_size=7", "--no-progress"]) == 0  # fmt: skip
    (run / "evals" / "broken.json").write_text("{not json", encoding="utf-8")
    html = report.build_report(tmp_path, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "re-evaluations" in html and "eval_batch_size=7" in html
    assert "could not parse" in html and "broken.json" in html
