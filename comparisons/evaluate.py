"""Evaluate a finished run's checkpoint again, under changed evaluation settings.

    roadmap evaluate seq2seq --framework jax --run m30k-large --set decode=beam
    roadmap evaluate seq2seq --framework torch --set decode=beam --set bleu_bootstrap=1000

The run's own config (its config.json) is read back, `--set` changes fields of it (what
`predict` does, `limit_test`, `eval_batch_size`; a field that changes the model makes the
checkpoint fail to restore, with the reason), and the project's own `train_and_evaluate`
builds the data, vocabulary and state as for a resumed run. The driver then evaluates the
newest checkpoint instead of training (shared_data.training.evaluate_only), so this works
for every project without project code. The scores are printed and written to
`<run>/evals/<name>.json` with the overrides, the step, the time and the versions.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from comparisons.options import add_data_dir_flag, add_set_flag
from comparisons.registry import FRAMEWORKS, get_project
from comparisons.runfolders import resolve_run, stored_config
from shared_data.configs.base import override, validate
from shared_data.runlog import write_json

TAKES_CONFIG = False  # the config is the run's; --set changes it (added below)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `roadmap evaluate` (the CLI adds project, --device and --workdir)."""
    parser.add_argument("--framework", required=True, choices=sorted(FRAMEWORKS))
    parser.add_argument("--run", dest="run", help="run id (default: the newest run)")
    add_set_flag(parser, "change a field of the run's config for this evaluation (repeatable)")
    add_data_dir_flag(parser)
    parser.add_argument("--name", help="file name under <run>/evals/ (default: from --set)")


def eval_config(project, path: Path, changes: list[str], data_dir: str | None):
    """The run's config with `changes` ("key=value") applied, validated."""
    config = stored_config(project, path)
    if data_dir is not None:
        config = override(config, {"data_dir": data_dir})
    config = override(config, list(changes))
    validate(config)
    return config


def evaluate_run(project, framework: str, path: Path, config, progress: bool = True) -> dict:
    """{"framework", "step", "test": scores, "test_time_s", ...} of the run's newest checkpoint."""
    from shared_data.training import Evaluated, evaluate_only

    train = project.module(framework)
    with evaluate_only():
        try:
            train.train_and_evaluate(config, path, resume=True, progress=progress)
        except Evaluated as done:
            return done.result
    raise RuntimeError(f"{train.__name__}.train_and_evaluate returned without evaluating")


def eval_name(changes: list[str]) -> str:
    """A file name from the overrides: "decode=beam,beam_size=10", or "as-trained"."""
    text = ",".join(changes) or "as-trained"
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)[:120]


def run(args: argparse.Namespace) -> int:
    """Entry point of `roadmap evaluate`."""
    from comparisons.env import pin_cpu_fp32, versions

    if args.device != "cpu":
        print("roadmap evaluate: evaluation runs on the CPU here, as `roadmap run` trains")
        return 2
    project = get_project(args.project)
    path = resolve_run(args.workdir, project.name, args.framework, args.run)
    config = eval_config(project, path, args.set, args.data_dir)
    pin_cpu_fp32()
    start = time.perf_counter()
    result = evaluate_run(project, args.framework, path, config, progress=args.progress)
    result.update(
        run=str(path),
        overrides=list(args.set),
        date=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        wall_s=time.perf_counter() - start,
        versions=versions(),
    )
    out = path / "evals" / f"{args.name or eval_name(args.set)}.json"
    out.parent.mkdir(exist_ok=True)
    write_json(out, result)
    for split in ("test", "val"):
        if split in result:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in result[split].items())
            print(f"{split} (step {result['step']}, {result[f'{split}_time_s']:.1f} s): {shown}")
    print(f"wrote {out}")
    return 0


__all__ = ["TAKES_CONFIG", "add_arguments", "eval_config", "evaluate_run", "run"]
