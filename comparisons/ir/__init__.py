"""`roadmap ir PROJECT`: the compiled IR of one project, JAX and PyTorch side by side.

core.py drives the dumps and writes ir.md/ir.json; jax_ir.py and torch_ir.py hold each
framework's half; graphs.py the normalisers and pictures; opmap.py the shared op categories.
"""

from comparisons.ir.core import add_arguments, dump_ir, render_markdown, run

__all__ = ["add_arguments", "dump_ir", "render_markdown", "run"]
