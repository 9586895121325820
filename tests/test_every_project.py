"""Every registered project, end to end through every tool, from its `smoke` variant.

Nothing here names a project: a project added to the registry is covered by these tests
without writing a new one. Each project runs in both frameworks (`roadmap run`), then
`compare`, `ir`, a quick `bench`, and `report`, whose page must show what the tools wrote.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from comparisons.cli import main
from comparisons.registry import list_projects
from comparisons.report.runs import last_epoch_images

PROJECTS = list_projects()


class _Text(HTMLParser):
    """The page's visible text, chunk by chunk."""

    def __init__(self):
        super().__init__()
        self.chunks: list[str] = []

    def handle_data(self, data):
        if data.strip():
            self.chunks.append(data.strip())


def _roadmap(*argv: str) -> None:
    code = main([*argv])
    assert code == 0, f"roadmap {' '.join(argv)} exited {code}"


# Under pytest-xdist (`--dist loadgroup`, pyproject.toml) a project's tests share one worker,
# so its runs are made once.
@pytest.fixture(
    scope="module",
    params=[pytest.param(p, marks=pytest.mark.xdist_group(p.name)) for p in PROJECTS],
    ids=lambda p: p.name,
)
def project_runs(request, tmp_path_factory):
    """Every tool run once over the project's smoke variant, in one runs folder."""
    project = request.param
    workdir = tmp_path_factory.mktemp(project.name)
    common = ("--variant", "smoke", "--workdir", str(workdir), "--no-progress")
    for framework in ("jax", "torch"):
        _roadmap("run", project.name, "--framework", framework, "--run-id", "solo", *common)
    _roadmap("compare", project.name, "--run-id", "side", *common)
    # No SVGs: Graphviz takes a minute or more per whole-step picture on a slow CPU, and
    # tests/test_ir.py and tests/test_report.py draw and show the MNIST pictures.
    ir_flags = ("--no-compile", "--no-torchscript", "--no-pictures", "--batch-size", "4")
    _roadmap("ir", project.name, *ir_flags, *common)
    _roadmap(
        "bench",
        project.name,
        *("--batch-sizes", "4", "--steps", "2", "--modes", "jax,torch-eager"),
        *("--no-ops", "--peak-n", "128"),
        *common,
    )
    _roadmap("report", "--workdir", str(workdir), "--no-progress")
    return project, workdir


def test_runs_write_their_files_and_the_task_metrics(project_runs):
    project, workdir = project_runs
    task = project.task(project.config("smoke"))
    for framework in ("jax", "torch"):
        run = workdir / project.name / framework / "solo"
        for name in ("config.json", "summary.json", "metrics.jsonl"):
            assert (run / name).is_file(), run / name
        summary = json.loads((run / "summary.json").read_text())
        assert summary["task"]["headline"] == f"test_{task.headline}"
        last = summary["history"][-1]
        for metric in task.metric_names:
            assert f"test_{metric}" in last and last[f"test_{metric}"] == last[f"test_{metric}"]
        assert list((run / "checkpoints").iterdir()), "no checkpoint written"


def test_compare_ports_the_weights_and_tabulates_the_headline(project_runs):
    project, workdir = project_runs
    result = json.loads((workdir / project.name / "compare" / "side" / "compare.json").read_text())
    assert result["initial_outputs_max_abs_diff"] <= 1e-5
    headline = project.task(project.config("smoke")).headline
    assert any(row["metric"] == f"epoch 1 test {headline}" for row in result["rows"])
    for row in result["rows"]:
        if row["metric"].startswith("epoch 1 test"):
            assert row["jax"] is not None and row["torch"] is not None, row


# Recurrences are not counted alike yet: XLA's cost analysis counts a while loop's body once,
# whatever its trip count, and torch's FLOP counter has no formula for its LSTM ops (it
# counts only the projections around them). Both sides must still count something.
FLOPS_NOT_COMPARABLE = {
    "sentiment": "the LSTM's recurrence (a while loop / aten LSTM ops)",
    # The smoke transformer's difference is exactly its attention cores (QK^T and AV, forward
    # and backward): torch's FlopCounterMode counts none for CPU scaled_dot_product_attention.
    "seq2seq": "torch counts no FLOPs in CPU scaled_dot_product_attention",
}


def test_ir_dumps_both_frameworks(project_runs):
    project, workdir = project_runs
    ir = json.loads((workdir / project.name / "ir" / "ir.json").read_text())
    assert not ir["setup_failed"], ir["errors"]
    for framework in ("jax", "torch"):
        for what in ("forward", "train_step"):
            section = ir["frameworks"][framework][what]
            assert sum(section["op_categories"].values()) > 0, (framework, what)
    for framework in ("jax", "torch"):  # --no-pictures: each graph's source, no SVG
        folder = workdir / project.name / "ir" / framework
        assert (folder / "train_step.whole.dot").is_file() and not list(folder.glob("*.svg"))
    flops = ir["comparison"]["train_step"]["matmul_conv_flops"]
    assert flops["jax"] and flops["torch"], flops
    if project.name not in FLOPS_NOT_COMPARABLE:
        assert flops["rel_diff"] < 1e-6, flops


def test_bench_times_both_frameworks(project_runs):
    project, workdir = project_runs
    bench = json.loads(next((workdir / project.name / "bench").rglob("bench.json")).read_text())
    measured = {(r["mode"], r["what"]) for r in bench["results"] if r.get("median_ms")}
    assert {("jax", "train"), ("torch-eager", "train")} <= measured, bench["errors"]


def test_report_shows_every_tool(project_runs):
    project, workdir = project_runs
    html = (workdir / "report.html").read_text(encoding="utf-8")
    parser = _Text()
    parser.feed(html)
    text = " ".join(parser.chunks)
    section = text.split(f"{project.name}: training runs")[-1]  # the body, not the contents
    for tool in ("JAX vs PyTorch (compare)", "benchmarks", "compiled IR"):
        assert f"{project.name}: {tool}" in section
    compare = json.loads((workdir / project.name / "compare" / "side" / "compare.json").read_text())
    headline = compare["runs"]["jax"]["task"]["headline"]
    value = compare["runs"]["jax"]["history"][-1][headline]
    kind = compare["runs"]["jax"]["task"]["formats"][headline.removeprefix("test_")]
    assert (f"{100 * value:.2f}%" if kind == "pct" else f"{value:.4f}") in section
    assert "matmul/conv" in section  # the IR's op-category table
    for framework in ("jax", "torch"):  # a project that draws pictures gets them on the page
        run = Path(workdir / project.name / framework / "solo")
        for name in last_epoch_images(run / "images") if (run / "images").is_dir() else ():
            assert f'alt="{framework} {name}"' in html, (framework, name)
    assert "http://" not in html and "https://" not in html
