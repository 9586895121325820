"""Load-test a local `roadmap serve`: requests/s and p50/p95/p99 latency per concurrency.

`roadmap loadtest http://127.0.0.1:8000 --concurrency 1,8,32 --duration-s 5` asks the
server's GET /metadata for its input schema, sends one random example per POST /predict
from N concurrent clients (httpx's async client, one connection each), and stops at the
duration or at --max-requests, whichever comes first. Only 127.0.0.1/localhost is accepted:
this is a measuring tool, not a way to flood someone else's server.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

TAKES_PROJECT = False
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `roadmap loadtest`."""
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8000 (loopback only)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--duration-s", dest="duration_s", type=float, default=5.0)
    parser.add_argument(
        "--max-requests", dest="max_requests", type=int, default=100_000, help="per level"
    )
    parser.add_argument("--warmup-s", dest="warmup_s", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=1, help="examples per request")
    parser.add_argument("--out", default="loadtest.json", help="where to write the JSON results")


def check_local(url: str) -> str:
    """`url` without a trailing slash; raises ValueError unless its host is loopback."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOCAL_HOSTS:
        raise ValueError(f"refusing {url!r}: loadtest only targets http://127.0.0.1 or localhost")
    return url.rstrip("/")


def request_body(input_schema: dict[str, Any], batch: int = 1, seed: int = 0) -> bytes:
    """A JSON POST /predict body of `batch` random examples matching `input_schema`."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for name, field in input_schema.items():
        shape = (batch, *field["shape"][1:])
        if field.get("num_classes") is not None:
            inputs[name] = rng.integers(0, field["num_classes"], shape).tolist()
        else:
            inputs[name] = rng.random(shape).astype(np.float32).tolist()
    return json.dumps({"inputs": inputs}).encode()


def percentiles(latencies_s: list[float]) -> dict[str, float | None]:
    """p50/p95/p99 in milliseconds (None without samples)."""
    if not latencies_s:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    ms = np.asarray(latencies_s) * 1000
    return {f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 95, 99)}


async def _level(url: str, body: bytes, concurrency: int, duration_s: float, limit: int):
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    sent = 0
    stop_at = time.perf_counter() + duration_s
    headers = {"content-type": "application/json"}

    async def worker() -> None:
        nonlocal sent
        # One client (one keep-alive connection) per worker: a shared pool of 32 connections
        # costs the client more CPU per request than the server spends on it.
        async with httpx.AsyncClient(timeout=60.0) as client:
            await client.get(f"{url}/healthz")  # connect before the clock matters
            while time.perf_counter() < stop_at and sent < limit:
                sent += 1
                start = time.perf_counter()
                try:
                    response = await client.post(f"{url}/predict", content=body, headers=headers)
                    key = str(response.status_code)
                except Exception as err:  # noqa: BLE001 - counted, not fatal: the load goes on
                    key = type(err).__name__
                if key == "200":
                    latencies.append(time.perf_counter() - start)
                statuses[key] = statuses.get(key, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "requests": sent,
        "ok": len(latencies),
        "statuses": statuses,
        "wall_s": wall,
        "requests_per_s": len(latencies) / wall if wall > 0 else 0.0,
        **percentiles(latencies),
    }


async def load_test(
    url: str,
    levels: list[int],
    duration_s: float = 5.0,
    max_requests: int = 100_000,
    warmup_s: float = 0.5,
    batch: int = 1,
) -> dict[str, Any]:
    """Results of every concurrency level against the server at `url` (loopback only)."""
    url = check_local(url)
    async with httpx.AsyncClient(timeout=60.0) as client:
        metadata = (await client.get(f"{url}/metadata")).raise_for_status().json()
    body = request_body(metadata["input_schema"], batch)
    rows = []
    for concurrency in levels:
        if warmup_s > 0:  # the server's caches and allocator hot, not measured
            await _level(url, body, concurrency, warmup_s, max_requests)
        rows.append(await _level(url, body, concurrency, duration_s, max_requests))
    server = {k: metadata.get(k) for k in ("project", "model", "backend", "run_id", "settings")}
    return {"url": url, "server": server, "batch": batch, "duration_s": duration_s, "levels": rows}


def format_table(result: dict[str, Any]) -> str:
    """A fixed-width table of one load test."""
    server = result["server"]
    settings = server.get("settings") or {}
    mode = "batching" if settings.get("batching") else "no batching"
    lines = [
        f"{server.get('project')} {server.get('model')} on {server.get('backend')} ({mode})",
        f"{'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  statuses",
    ]
    for row in result["levels"]:
        cells = [f"{row[k]:>8.1f}" if row[k] is not None else f"{'-':>8}" for k in
                 ("requests_per_s", "p50_ms", "p95_ms", "p99_ms")]  # fmt: skip
        lines.append(f"{row['concurrency']:>7} " + " ".join(cells) + f"  {row['statuses']}")
    return "\n".join(lines)


def run(args) -> int:
    """Run the load test, print the table and write the JSON (`roadmap loadtest`)."""
    try:
        check_local(args.url)
        levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError as err:
        print(f"roadmap loadtest: {err}")
        return 2
    if not levels or min(levels) < 1 or args.duration_s <= 0 or args.max_requests < 1:
        print("roadmap loadtest: concurrency, --duration-s and --max-requests must be positive")
        return 2
    gc.freeze()  # the client's imports are permanent; full collections then skip them
    result = asyncio.run(
        load_test(args.url, levels, args.duration_s, args.max_requests, args.warmup_s, args.batch)
    )
    print(format_table(result))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0
