"""The report's bench section: no "% of peak" above 100%, and the runtime that was in force."""

from __future__ import annotations

import json
import re

from report_fixtures import PROJECT, make_runs_tree

from comparisons import report


def test_report_never_shows_more_than_100_percent_of_peak(tmp_path):
    runs = make_runs_tree(tmp_path)
    path = runs / PROJECT / "bench" / "bench.json"
    bench = json.loads(path.read_text())
    # A file of the old kind: fractions against each framework's own matmul, up to 176%.
    for row in bench["results"]:
        row["peak_fraction"] = 1.76
    bench["versions"] |= {"runtime": "fast", "allocator": "glibc (tuned)", "xla_flags": "--x=1"}
    path.write_text(json.dumps(bench))
    out = report.build_report(runs, runs / "report.html")
    section = out.read_text().split('id="mnist-bench"', 1)[1].split('id="mnist-ir"', 1)[0]
    percents = [float(p) for p in re.findall(r"(\d+(?:\.\d+)?)\s*%", section)]
    assert percents and max(percents) <= 100.0
    best = max(r["gflops"] for r in bench["results"])
    assert f"{best:.1f}" in section and "% peak divides by the best GFLOP/s" in section
    assert "runtime in force" in section and "glibc (tuned)" in section
