"""The FastAPI application: POST /predict behind a dynamic batcher, probes, metadata, metrics.

`create_app(loader, settings)` builds the app; the model loads in the background once the
server starts (GET /readyz answers 503 until it is loaded and warmed up), and on shutdown
the batcher finishes every admitted request before the worker stops. Request bodies are
read with a byte limit before anything parses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel

from comparisons.serve.backends import Backend, schema
from comparisons.serve.batching import Batcher, QueueFull
from comparisons.serve.inputs import BadRequest, image_input, parse_json, parse_png

log = logging.getLogger("roadmap.serve")
PATHS = ("/predict", "/healthz", "/readyz", "/metadata", "/metrics")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The server's limits: batching, queue, timeout and request size."""

    max_batch: int = 32  # examples per model call, and per request
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    queue: int = 256  # requests admitted (waiting or running) before 503
    timeout_s: float = 10.0  # per request, queueing included, before 504
    batching: bool = True  # False: one model call per request (the load test's baseline)
    max_body_bytes: int = 4 << 20  # larger bodies get 413 before they are parsed
    freeze_gc: bool = False  # gc.freeze() once loaded: for a server process of its own


class Outputs(BaseModel):
    """POST /predict's answer: the model's outputs, one row per example sent."""

    outputs: list[Any]
    probabilities: list[Any] | None = None  # classifiers: softmax of the outputs (logits)


class Error(BaseModel):
    """Every refusal: a message that says what was expected."""

    error: str


_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "inputs": {
                        "type": "object",
                        "description": "model input name -> nested lists [N, ...] (NHWC "
                        "images), per GET /metadata's input_schema",
                        "additionalProperties": {"type": "array"},
                    },
                    "text": {
                        "description": "instead of inputs, for a model made from text (GET "
                        "/metadata's text_inputs): a string or a list of strings, encoded "
                        "with the run's tokenizer",
                        "oneOf": [
                            {"type": "string"},
                            {"type": "array", "items": {"type": "string"}},
                            {"type": "object"},
                        ],
                    },
                },
            }
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
    },
}
_ERRORS = {code: {"model": Error} for code in (400, 413, 415, 422, 503, 504)}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis (float64 for the exponentials, then float32)."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(shifted - shifted.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


class _Metrics:
    def __init__(self, max_batch: int):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "roadmap_requests", "HTTP requests by path and status", ["path", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "roadmap_predict_latency_seconds", "POST /predict latency, queueing included",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )  # fmt: skip
        sizes = [2**i for i in range(max(1, max_batch).bit_length() + 1)]
        self.batch_size = Histogram(
            "roadmap_batch_size", "examples per model call", buckets=sizes, registry=self.registry
        )
        self.model_seconds = Histogram(
            "roadmap_model_seconds", "seconds per model call", registry=self.registry
        )
        self.queue_depth = Gauge(
            "roadmap_queue_depth", "requests admitted: waiting or running", registry=self.registry
        )

    def on_batch(self, examples: int, seconds: float) -> None:
        self.batch_size.observe(examples)
        self.model_seconds.observe(seconds)


class _CountRequests:
    """ASGI middleware counting every HTTP answer by path and status (plain ASGI: no overhead
    of BaseHTTPMiddleware on the hot path)."""

    def __init__(self, app, metrics: _Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"] if scope["path"] in PATHS else "other"
        status, start = [500], time.perf_counter()

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(path, str(status[0])).inc()
            if path == "/predict":
                self.metrics.latency.observe(time.perf_counter() - start)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"body of {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():  # chunked bodies carry no length: count them
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _uploaded_file(request: Request, body: bytes) -> bytes:
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartParser

    async def stream():
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=16).parse()
    except Exception as err:  # noqa: BLE001 - any parse failure is a malformed body
        raise BadRequest(400, f"malformed multipart body: {str(err)[:200]}") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise BadRequest(422, "send the PNG as the multipart file field 'file'")
    return await upload.read()


def create_app(
    loader: Callable[[], Backend],
    settings: Settings = Settings(),
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The serving app; `loader` returns the loaded backend (called once, off the event loop)."""
    metrics = _Metrics(settings.max_batch)
    state: dict[str, Any] = {"backend": None, "batcher": None, "error": None}

    async def load() -> None:
        loop = asyncio.get_running_loop()
        try:
            backend = await loop.run_in_executor(None, loader)
            await loop.run_in_executor(None, backend.run_warmup, settings.max_batch)
        except Exception as err:  # noqa: BLE001 - reported by /readyz and the log
            log.exception("loading the model failed")
            state["error"] = f"{type(err).__name__}: {err}"
            if on_load_error is not None:
                on_load_error(err)
            return
        batcher = Batcher(
            backend.predict,
            settings.max_batch if settings.batching else 0,
            settings.max_wait_ms / 1000,
            settings.queue,
            metrics.on_batch,
        )
        # The millions of objects jax/torch import are permanent: freezing them keeps the
        # collector from walking them in full collections (pauses of ~200 ms under load).
        if settings.freeze_gc:
            gc.freeze()
        batcher.start()
        metrics.queue_depth.set_function(lambda: batcher.admitted)
        state.update(backend=backend, batcher=batcher)
        log.info("ready: %s", backend.metadata)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.get_running_loop().create_task(load())
        yield
        # uvicorn has already waited for the open requests; finish what the batcher holds.
        if state["batcher"] is not None:
            await state["batcher"].stop()
        task.cancel()

    app = FastAPI(
        title="roadmap serve",
        description="One model of a roadmap run behind dynamic batching (docs/SERVING.md).",
        lifespan=lifespan,
    )
    app.add_middleware(_CountRequests, metrics=metrics)

    @app.exception_handler(BadRequest)
    async def refused(request: Request, err: BadRequest) -> JSONResponse:
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.post(
        "/predict", response_model=Outputs, responses=_ERRORS, openapi_extra={"requestBody": _BODY}
    )
    async def predict(request: Request) -> JSONResponse:
        """Outputs of the model for a JSON batch, raw text or one uploaded PNG."""
        backend, batcher = state["backend"], state["batcher"]
        if batcher is None:
            raise BadRequest(503, "the model is not loaded yet; see GET /readyz")
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in ("application/json", "multipart/form-data"):
            raise BadRequest(
                415, f"content type {media or 'none'!r}; send application/json or "
                "multipart/form-data (a PNG as field 'file')",
            )  # fmt: skip
        body = await _read_body(request, settings.max_body_bytes)
        if media == "application/json":
            batch = parse_json(body, backend.specs, settings.max_batch, backend.text)
        else:
            batch = parse_png(await _uploaded_file(request, body), backend.specs)
        try:
            outputs = await batcher.submit(batch, settings.timeout_s)
        except QueueFull as err:
            raise BadRequest(503, f"queue full: {err}; retry later") from None
        except asyncio.TimeoutError:
            raise BadRequest(504, f"no answer within {settings.timeout_s} s") from None
        except Exception as err:  # noqa: BLE001 - the model failed: say so in JSON, stay up
            log.exception("model call failed")
            return JSONResponse({"error": f"model error: {type(err).__name__}"}, status_code=500)
        answer = {"outputs": outputs.tolist()}
        if backend.classifier:
            answer["probabilities"] = softmax(outputs).tolist()
        return JSONResponse(answer)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """200 while the process serves HTTP (liveness)."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": Error}})
    async def readyz() -> JSONResponse:
        """200 once the model is loaded and warmed up (readiness), else 503."""
        if state["batcher"] is not None:
            return JSONResponse({"ready": True})
        reason = state["error"] or "loading and warming up the model"
        return JSONResponse({"ready": False, "error": reason}, status_code=503)

    @app.get("/metadata", responses={503: {"model": Error}})
    async def metadata() -> JSONResponse:
        """Project, model, backend, run, input schema and weights checksum of what is served."""
        backend = state["backend"]
        if backend is None:
            raise BadRequest(503, "the model is not loaded yet; see GET /readyz")
        return JSONResponse(
            {
                **backend.metadata,
                "input_schema": schema(backend.specs),
                "png_input": image_input(backend.specs),
                "settings": dataclasses.asdict(settings),
            }
        )

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Request counts, latency, batch sizes and queue depth in Prometheus text format."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
