"""End to end on real (smoke-sized) outputs: compare, ir and bench feed one HTML report."""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser

from comparisons.bench import bench_project, write_bench
from comparisons.compare import compare
from comparisons.ir import dump_ir
from comparisons.registry import get_project
from comparisons.report import build_report


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.chunks: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.chunks.append(data.strip())


def test_report_over_real_compare_ir_and_bench_outputs(tmp_path):
    config = dataclasses.replace(get_project("mnist").config("smoke"), model="mlp", epochs=1)
    result = compare("mnist", config, tmp_path, "e2e", progress=False)
    dump_ir(
        "mnist",
        config,
        tmp_path / "mnist" / "ir",
        what=("forward",),
        batch_size=4,
        progress=False,
        inductor=False,
        torchscript=False,
    )
    bench = bench_project(
        "mnist",
        config,
        batch_sizes=(8,),
        steps=3,
        modes=("jax", "torch-eager"),
        progress=False,
        warmup=1,
        peak_n=256,
        data_examples=256,
    )
    write_bench(bench, tmp_path)
    html = build_report(tmp_path, tmp_path / "report.html").read_text(encoding="utf-8")
    parser = _Text()
    parser.feed(html)
    text = " ".join(c for c in parser.chunks if c)
    accuracy = result["runs"]["jax"]["history"][0]["test_accuracy"]
    assert f"{100 * accuracy:.2f}%" in text  # the compare table's real number
    assert "mnist: JAX vs PyTorch (compare)" in text
    bench_text = text.split("mnist: benchmarks")[-1].split("mnist: compiled IR")[0]
    assert "bench.json missing" not in bench_text
    median = bench["results"][0]["median_ms"]
    assert f"{median:.2f}" in bench_text or f"{median:.1f}" in bench_text, bench_text[:600]
    assert "matmul/conv" in text  # the IR op-category table
    assert "missing" not in text.split("mnist: compiled IR")[-1][:200]
    assert parser.tags.count("table") >= 4 and "http://" not in html and "https://" not in html
