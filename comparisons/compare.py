"""`roadmap compare`: both frameworks from the same initial weights, batches and config.

The torch model's seeded initialisation is the reference; comparisons/weights.py ports it
to Flax (asserting every shape) and the two runs then see the same examples in the same
order. What they do not share is what each framework draws from its own generator during
training: dropout masks and sampling noise (the VAE's).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from comparisons.env import pin_cpu_fp32, run_versions
from comparisons.options import load_config
from comparisons.parity import make_pair, predict_diff
from comparisons.registry import FRAMEWORK_LABELS, get_project
from comparisons.runfolders import new_run_id, run_dir
from shared_data.configs.base import ConfigError, to_dict
from shared_data.runlog import atomic_write_text, write_json


def initial_weights(project, config) -> tuple[dict[str, Any], float]:
    """{framework: initial weights} ported from torch's init, and the max |output diff| then."""
    pair = make_pair(project, config, steps_per_epoch=1)
    # The same weights must give the same function before any training starts.
    batch = project.example_batch(8, seed=config.seed, config=config)
    return pair.weights, predict_diff(pair, batch)


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "rate":
        return f"{value:,.0f}"
    return f"{value:.4f}" if kind == "f4" else f"{value:.2f}"


def comparison_rows(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Side-by-side rows {metric, kind, <framework>: value} from the runs' summaries.

    Which metrics, and how to print them, come from the project's Task (recorded in every
    summary): the headline after every epoch, then every test metric and the training loss
    of the last epoch, then speed and size.
    """
    rows = []
    task = next(iter(summaries.values()))["task"]
    headline = task["headline"].removeprefix("test_")
    formats = task["formats"]
    epochs = max(len(s["history"]) for s in summaries.values())

    def row(label: str, key: str, kind: str, epoch: int) -> dict[str, Any]:
        out = {"metric": label, "kind": kind}
        for fw, s in summaries.items():
            history = s["history"]
            out[fw] = history[epoch].get(key) if epoch < len(history) else None
        return out

    for e in range(epochs):
        rows.append(row(f"epoch {e + 1} test {headline}", f"test_{headline}", formats[headline], e))
    last = epochs - 1
    for metric in (m for m in task["metrics"] if m != headline):
        rows.append(row(f"epoch {epochs} test {metric}", f"test_{metric}", formats[metric], last))
    rows.append(row(f"epoch {epochs} train loss", "train_loss", "f4", last))
    for key, label, kind in (
        ("train_examples_per_s", "train examples/s (compile excluded)", "rate"),
        ("first_step_s", "first step s (jit compiles here)", "f2"),
        ("num_params", "parameters", "int"),
        ("wall_s", "wall time s (after loading: training, compile, eval)", "f2"),
    ):
        rows.append(
            {"metric": label, "kind": kind, **{fw: s.get(key) for fw, s in summaries.items()}}
        )
    return rows


def format_table(rows: list[dict[str, Any]], frameworks: list[str]) -> str:
    """A GitHub-markdown table of `rows`, with a JAX/torch ratio column for speeds."""
    header = "| metric | " + " | ".join(FRAMEWORK_LABELS[f] for f in frameworks) + " |"
    lines = [header, "|---|" + "---:|" * len(frameworks)]
    for row in rows:
        cells = [_fmt(row.get(fw), row["kind"]) for fw in frameworks]
        lines.append(f"| {row['metric']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare(
    project_name: str,
    config,
    workdir: str | Path = "runs",
    run_id: str | None = None,
    frameworks: tuple[str, ...] = ("torch", "jax"),
    progress: bool = True,
) -> dict:
    """Run every framework on the same weights/batches/config; write compare.json and .md."""
    project = get_project(project_name)
    run_id = run_id or new_run_id()
    start = time.perf_counter()
    weights, logit_diff = initial_weights(project, config)
    summaries, paths = {}, {}
    for fw in frameworks:
        paths[fw] = run_dir(workdir, project.name, fw, run_id)
        summaries[fw] = project.module(fw).train_and_evaluate(
            config, paths[fw], init_weights=weights[fw], progress=progress
        )
    rows = comparison_rows(summaries)
    result = {
        "project": project.name,
        "run_id": run_id,
        "config": to_dict(config),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "versions": run_versions(),
        "frameworks": list(frameworks),
        "runs": summaries,
        "rows": rows,
        "initial_outputs_max_abs_diff": logit_diff,
        "workdirs": {fw: str(p) for fw, p in paths.items()},
        "total_wall_s": time.perf_counter() - start,
    }
    out = Path(workdir) / project.name / "compare" / run_id
    write_json(out / "compare.json", result)
    table = format_table(rows, list(frameworks))
    atomic_write_text(
        out / "compare.md",
        f"# {project.name}: JAX vs PyTorch ({run_id})\n\n"
        f"Initial weights ported from torch; max |output diff| before training: "
        f"{logit_diff:.2e}\n\n{table}\n",
    )
    result["table"], result["out_dir"] = table, str(out)
    return result


def compare_command(args) -> int:
    """`roadmap compare PROJECT`: print and write the side-by-side table."""
    if args.device != "cpu":
        print("roadmap compare: training runs on the CPU here; use `roadmap bench --device`")
        return 2
    config = load_config(args)
    pin_cpu_fp32()
    frameworks = tuple(f.strip() for f in args.frameworks.split(",") if f.strip())
    unknown = [f for f in frameworks if f not in FRAMEWORK_LABELS]
    if not frameworks or unknown or len(set(frameworks)) != len(frameworks):
        raise ConfigError(
            f"--frameworks wants distinct names among {', '.join(FRAMEWORK_LABELS)}, "
            f"got {args.frameworks!r}"
        )
    result = compare(args.project, config, args.workdir, args.run_id, frameworks, args.progress)
    what = ", ".join(str(getattr(config, k)) for k in ("model", "dataset") if hasattr(config, k))
    print(
        f"\n{args.project} ({what}): same initial weights "
        f"(max |output diff| {result['initial_outputs_max_abs_diff']:.1e}), same batches\n"
    )
    print(result["table"])
    print(f"\nwritten: {result['out_dir']}/compare.json, compare.md")
    return 0
