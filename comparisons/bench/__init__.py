"""`roadmap bench PROJECT`: compiled throughput, jax.jit vs torch eager/compile, train and infer.

core.py runs the sweep and writes bench.json/bench.md; modes.py builds one ready step per
(mode, step, batch); ops.py times single ops; peak.py measures this machine's baselines.
"""

from comparisons.bench.core import add_arguments, bench_project, run, to_markdown, write_bench

__all__ = ["add_arguments", "bench_project", "run", "to_markdown", "write_bench"]
