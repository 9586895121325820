"""`roadmap report`: one self-contained HTML page over everything under runs/.

core.py assembles the page; runs.py, bench.py and ir.py render their sections; plots.py
draws the matplotlib figures; html.py holds the page primitives.
"""

from comparisons.report.core import add_arguments, build_report, run

TAKES_PROJECT = False  # the CLI adds no project argument: the report covers every project

__all__ = ["TAKES_PROJECT", "add_arguments", "build_report", "run"]
