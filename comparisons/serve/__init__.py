"""Serve a trained run over HTTP (FastAPI + uvicorn) with dynamic batching: jax, torch or onnx.

`roadmap serve PROJECT --backend torch` serves the project's newest torch run (`--run` picks
one) on 127.0.0.1:8000: POST /predict, GET /healthz, /readyz, /metadata, /metrics, /docs.
docs/SERVING.md explains the endpoints, the limits and how this maps to TorchServe.
"""

from __future__ import annotations

import argparse
import logging
import os

from comparisons.serve.app import Settings, create_app
from comparisons.serve.backends import BACKENDS, Backend, load_backend, run_path

# The CLI adds the project and --workdir, not the training flags: the config is the run's.
TAKES_CONFIG = False

__all__ = [
    "TAKES_CONFIG",
    "Backend",
    "Settings",
    "add_arguments",
    "create_app",
    "load_backend",
    "run",
]


def _cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `roadmap serve`."""
    parser.add_argument("--backend", required=True, choices=BACKENDS)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--run", dest="run", help="run id (default: the newest run)")
    defaults = Settings()
    parser.add_argument(
        "--max-batch",
        dest="max_batch",
        type=int,
        default=defaults.max_batch,
        help="examples per model call, and the most one request may send",
    )
    parser.add_argument(
        "--max-wait-ms",
        dest="max_wait_ms",
        type=float,
        default=defaults.max_wait_ms,
        help="how long a batch's first request waits for others",
    )
    parser.add_argument(
        "--queue", type=int, default=defaults.queue, help="requests admitted before 503"
    )
    parser.add_argument(
        "--timeout-s",
        dest="timeout_s",
        type=float,
        default=defaults.timeout_s,
        help="per request, queueing included, before 504",
    )
    parser.add_argument(
        "--max-body-bytes",
        dest="max_body_bytes",
        type=int,
        default=defaults.max_body_bytes,
        help="larger request bodies get 413",
    )
    parser.add_argument(
        "--model-threads",
        dest="model_threads",
        type=int,
        default=max(1, _cores() - 1),
        help="torch's intra-op threads (default: the cores less one, left to the event loop)",
    )
    parser.add_argument(
        "--no-batching",
        dest="batching",
        action="store_false",
        help="one model call per request (the baseline dynamic batching is measured against)",
    )


def run(args) -> int:
    """Load the run, start uvicorn, serve until SIGINT/SIGTERM, finishing open requests."""
    import uvicorn

    from comparisons.env import pin_cpu_fp32
    from comparisons.registry import get_project

    if args.device != "cpu":
        print("roadmap serve: serving runs on the CPU here (--device cpu)")
        return 2
    if args.max_batch < 1 or args.queue < 1 or args.timeout_s <= 0 or args.max_wait_ms < 0:
        print("roadmap serve: --max-batch, --queue, --timeout-s must be positive")
        return 2
    pin_cpu_fp32()
    project = get_project(args.project)
    path = run_path(project, args.backend, args.workdir, args.run)  # no run: a clear error now
    settings = Settings(
        args.max_batch,
        args.max_wait_ms,
        args.queue,
        args.timeout_s,
        args.batching,
        args.max_body_bytes,
        freeze_gc=True,  # this process only serves: its imported modules stay for good
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    failed: list[BaseException] = []

    def stop(err: BaseException) -> None:
        failed.append(err)
        server.should_exit = True  # a model that cannot load leaves nothing to serve

    app = create_app(
        lambda: load_backend(project, args.backend, path, args.model_threads), settings, stop
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=False,  # a log line per request costs more than an MNIST CNN call
        timeout_graceful_shutdown=int(settings.timeout_s) + 5,
    )
    server = uvicorn.Server(config)
    print(f"roadmap serve: {project.name} ({args.backend}) from {path} on {args.host}:{args.port}")
    server.run()
    if failed:  # the log above has the traceback
        print(f"roadmap serve: error: could not load the model: {failed[0]}")
        return 1
    return 0
