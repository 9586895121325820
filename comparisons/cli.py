"""`roadmap`: list, run, compare, evaluate, ir, bench and report -- the project's command line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from comparisons.options import add_data_dir_flag, add_set_flag
from comparisons.registry import FRAMEWORKS
from comparisons.runtime import MALLOCS, RUNTIMES
from shared_data.configs.base import ConfigError, UnknownNameError
from shared_data.errors import DataError

TOOLS = (
    "ir", "bench", "report", "export", "serve", "loadtest", "autodiff", "styles", "pergrad",
    "evaluate",
)  # fmt: skip


def _add_common(
    parser: argparse.ArgumentParser, project: bool = True, training=False, config: bool = True
) -> None:
    if project:
        parser.add_argument("project", help="project name (see `roadmap list`)")
    if project and not config:  # the config comes from a finished run (export, serve)
        parser.add_argument("--device", default="cpu", help="cpu, cuda or gpu")
    if project and config:
        parser.add_argument("--variant", default="default", help="config variant")
        parser.add_argument("--model", help="model name, e.g. mlp or cnn")
        add_set_flag(parser, "override any config field (repeatable)")
        add_data_dir_flag(parser)
        parser.add_argument("--dataset", help="dataset of the project (see `roadmap list`)")
        parser.add_argument(
            "--download", action="store_true", help="download the dataset if it is nowhere local"
        )
        parser.add_argument("--seed", type=int)
        parser.add_argument("--batch-size", dest="batch_size", type=int)
        # Not only for training: `roadmap ir|bench cifar10 --precision bf16` compile bf16 too.
        parser.add_argument(
            "--precision", help="fp32, or bf16: bf16 compute with fp32 weights (cifar10)"
        )
        parser.add_argument(
            "--weights",
            help="pretrained weights (transfer): imagenet, a torchvision weights name, "
            "a .pth state dict or a run folder (comparisons/pretrained.py)",
        )
        parser.add_argument("--device", default="cpu", help="cpu, cuda or gpu")
    if training:
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--lr", type=float)
        parser.add_argument("--optimizer", help="sgd, adam or adadelta")
        parser.add_argument("--schedule", help="constant, step, onecycle, cosine or linear")
        parser.add_argument(
            "--run-id", dest="run_id", help="name of the run folder (default: a timestamp)"
        )
    parser.add_argument("--workdir", default="runs", help="root of the run folders")
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="roadmap", description=__doc__)
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=os.environ.get("ROADMAP_RUNTIME", "fast"),
        help="fast (default, $ROADMAP_RUNTIME): glibc malloc tunables and the XLA:CPU flags "
        "that pay; stock: neither, to measure the difference (comparisons/runtime.py)",
    )
    parser.add_argument(
        "--malloc",
        choices=MALLOCS,
        default=os.environ.get("ROADMAP_MALLOC") or None,
        help="allocator, overriding the runtime's: tuned (glibc with tunables), system "
        "(glibc as is), tcmalloc or jemalloc (preloaded; must be installed); $ROADMAP_MALLOC",
    )
    parser.add_argument(
        "--xla-flags",
        dest="xla_flags",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the fast XLA:CPU flags on or off, overriding the runtime's choice",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="projects, datasets and what is available here")
    p.add_argument("--data-dir", dest="data_dir")
    p.set_defaults(func=lambda a: importlib.import_module("comparisons.runs").list_command(a))
    p = sub.add_parser("run", help="train and evaluate one project in one framework")
    _add_common(p, training=True)
    p.add_argument("--framework", required=True, choices=sorted(FRAMEWORKS))
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run (--run-id, default the newest) from its checkpoint",
    )
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="torch: train data-parallel in N processes (DDP), launched by torchrun",
    )
    p.add_argument(
        "--devices",
        type=int,
        help="jax: train data-parallel over N devices (CPU: N host devices, XLA_FLAGS)",
    )
    p.add_argument(
        "--parallel",
        choices=("pmap", "sharding", "shard_map"),
        default="sharding",
        help="jax --devices: the form of data parallelism (docs/SCALING.md)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="jax --devices: split the devices over N local processes (jax.distributed)",
    )
    p.set_defaults(func=lambda a: importlib.import_module("comparisons.runs").run_command(a))
    p = sub.add_parser("compare", help="both frameworks from the same weights and batches")
    _add_common(p, training=True)
    p.add_argument("--frameworks", default="torch,jax", help="which to run, in order")
    p.set_defaults(func=lambda a: importlib.import_module("comparisons.compare").compare_command(a))
    for name in TOOLS:
        try:
            module = importlib.import_module(f"comparisons.{name}")
            missing = [f for f in ("add_arguments", "run") if not hasattr(module, f)]
            if missing:
                raise ImportError(f"comparisons.{name} defines no {' or '.join(missing)}")
        except Exception as err:  # noqa: BLE001 - one broken tool must not take the others down
            p = sub.add_parser(name, help=f"unavailable: {err}")
            p.add_argument("rest", nargs="*")
            p.set_defaults(func=lambda a, e=err, n=name: _unavailable(n, e))
            continue
        p = sub.add_parser(name, help=(module.__doc__ or name).strip().splitlines()[0])
        # A tool module says TAKES_PROJECT = False when it works on no one project (report),
        # TAKES_CONFIG = False when it reads the config of a finished run (export, serve).
        _add_common(
            p,
            project=getattr(module, "TAKES_PROJECT", True),
            config=getattr(module, "TAKES_CONFIG", True),
        )
        module.add_arguments(p)
        p.set_defaults(func=module.run)
        if name == "bench":  # --memory: peak memory per resolution instead (bench/memory.py)
            memory = importlib.import_module("comparisons.bench.memory")
            memory.add_arguments(p)
            p.set_defaults(func=memory.with_memory(module.run))
    return parser


def _unavailable(name: str, err: Exception) -> int:
    print(f"roadmap {name} unavailable: {type(err).__name__}: {err}", file=sys.stderr)
    return 2


def cpu_xla_flags(args: argparse.Namespace) -> bool | None:
    """--xla-flags as asked, but off by default for a GPU command: the fast flags are XLA:CPU's.

    `--xla_backend_optimization_level` would also lower the GPU backend's LLVM level, so a
    `--device cuda` bench keeps XLA's GPU defaults unless --xla-flags asks otherwise.
    """
    if args.xla_flags is None and getattr(args, "device", "cpu") != "cpu":
        return False
    return args.xla_flags


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `roadmap` console script."""
    from_console = argv is None
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = list(argv)  # `roadmap run --nproc N` relaunches the same command
    if args.command in ("run", "ir") and getattr(args, "devices", None) is not None:
        # XLA:CPU's device count is read when JAX starts: set it now (before any re-exec).
        module = "comparisons.runs" if args.command == "run" else "comparisons.ir.parallel"
        importlib.import_module(module).set_jax_devices(args)
    if from_console:  # never replace a host process (pytest, a notebook) calling main(argv)
        from comparisons.runtime import ensure_runtime

        # Returns when the process already runs in the runtime asked for; else re-executes.
        ensure_runtime(args.runtime, args.malloc, cpu_xla_flags(args), argv)
    try:
        return int(args.func(args) or 0)
    except (DataError, ConfigError, UnknownNameError) as err:
        print(f"roadmap {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
