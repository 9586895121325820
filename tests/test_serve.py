"""roadmap serve: a real uvicorn server on a free loopback port, real HTTP, every refusal."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import io
import json
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from comparisons.cli import main
from comparisons.loadtest import check_local, load_test
from comparisons.registry import FRAMEWORKS, get_project, list_projects
from comparisons.runfolders import load_trained
from comparisons.serve import Settings, create_app, load_backend
from comparisons.serve.inputs import image_input
from shared_data.batches import to_float_nhwc

PROJECT = get_project("mnist")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Smoke-trained runs of both frameworks: workdir/mnist/<framework>/r1."""
    workdir = tmp_path_factory.mktemp("serve-runs")
    for framework in sorted(FRAMEWORKS):
        path = workdir / "mnist" / framework / "r1"
        PROJECT.module(framework).train_and_evaluate(PROJECT.config("smoke"), path, progress=False)
    return workdir


@pytest.fixture(scope="module")
def backends(runs):
    """The loaded jax and torch backends, shared by every server of this module."""
    return {fw: load_backend(PROJECT, fw, runs / "mnist" / fw / "r1") for fw in FRAMEWORKS}


@contextlib.contextmanager
def serving(backend, **settings):
    """A uvicorn server in a thread on a free port; yields (url, server); stops it cleanly."""
    app = create_app(lambda: backend, Settings(**settings))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    while httpx.get(f"{url}/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield url, server
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "the server did not shut down"


def png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 image."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def metric(text: str, line_start: str) -> float:
    """The value of the first Prometheus sample line starting with `line_start`."""
    return next(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line_start))


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_predictions_equal_the_projects_predict(framework, runs, backends):
    _, state, step = load_trained(PROJECT, framework, runs / "mnist" / framework / "r1")
    train = PROJECT.module(framework)
    loop = importlib.import_module(f"{FRAMEWORKS[framework]}.common.loop")
    batch = {"image": PROJECT.example_batch(3, seed=1)["image"]}
    pixels = np.random.default_rng(2).integers(0, 256, (28, 28), dtype=np.uint8)
    with serving(backends[framework]) as (url, _):
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        meta = httpx.get(f"{url}/metadata").json()
        answer = httpx.post(f"{url}/predict", json={"inputs": {"image": batch["image"].tolist()}})
        upload = httpx.post(f"{url}/predict", files={"file": ("d.png", png(pixels), "image/png")})
        assert "/predict" in httpx.get(f"{url}/openapi.json").json()["paths"]
    assert meta["backend"] == framework and meta["step"] == step and meta["run_id"] == "r1"
    assert meta["input_schema"] == {"image": {"shape": [None, 28, 28, 1], "dtype": "float32",
                                              "kind": "normal"}}  # fmt: skip
    assert len(meta["weights_sha256"]) == 64
    expected = np.asarray(train.predict(state, loop.to_device(batch)))
    assert answer.status_code == 200
    np.testing.assert_allclose(answer.json()["outputs"], expected, rtol=1e-5, atol=1e-5)
    image = {"image": to_float_nhwc(pixels[None])}
    expected = np.asarray(train.predict(state, loop.to_device(image)))
    np.testing.assert_allclose(upload.json()["outputs"], expected, rtol=1e-5, atol=1e-5)


def test_every_bad_request_is_a_clear_4xx_and_the_server_stays_up(backends):
    good = np.zeros((1, 28, 28, 1)).tolist()
    nan_image = np.full((1, 28, 28, 1), np.nan).tolist()  # json.dumps writes NaN, as JS can't
    post = {"json": lambda body: {"content": body, "headers": {"content-type": "application/json"}}}
    cases = {
        "wrong shape": (422, {"json": {"inputs": {"image": np.zeros((1, 28, 28)).tolist()}}}),
        "wrong dtype": (422, {"json": {"inputs": {"image": [[[["a"] * 1] * 28] * 28]}}}),
        "NaN": (422, post["json"](json.dumps({"inputs": {"image": nan_image}}).encode())),
        "inf": (422, {"json": {"inputs": {"image": [[[[1e39]] * 28] * 28]}}}),
        "empty batch": (422, {"json": {"inputs": {"image": []}}}),
        "missing input": (422, {"json": {"inputs": {}}}),
        "not an object": (422, {"json": [1, 2]}),
        "too many examples": (413, {"json": {"inputs": {"image": good * 5}}}),
        "oversized body": (413, post["json"](b" " * 300_000)),
        "unknown content type": (415, {"content": b"x", "headers": {"content-type": "text/csv"}}),
        "corrupt image": (422, {"files": {"file": ("x.png", b"\x89PNG\r\n\x1a\n" + b"0" * 99)}}),
        "not a PNG": (422, {"files": {"file": ("x.png", b"GIF89a")}}),
        "wrong image size": (422, {"files": {"file": ("x.png", png(np.zeros((5, 7), np.uint8)))}}),
        "no file field": (422, {"files": {"other": ("x.png", b"x")}}),
        "invalid JSON": (400, post["json"](b'{"inputs": ')),
        "invalid UTF-8": (400, post["json"](b"\xff\xfe\x00")),
    }  # fmt: skip
    with serving(backends["torch"], max_batch=4, max_body_bytes=200_000) as (url, _):
        for name, (status, request) in cases.items():
            answer = httpx.post(f"{url}/predict", **request)
            assert answer.status_code == status, (name, answer.text)
            assert answer.json()["error"], name
        assert httpx.post(f"{url}/predict", json={"inputs": {"image": good}}).status_code == 200
        text = httpx.get(f"{url}/metrics").text
    assert metric(text, 'roadmap_requests_total{path="/predict",status="422"}') == 11
    assert metric(text, 'roadmap_requests_total{path="/predict",status="413"}') == 2
    assert metric(text, 'roadmap_requests_total{path="/predict",status="200"}') == 1
    assert metric(text, "roadmap_batch_size_count") == 1 and "roadmap_queue_depth 0.0" in text


async def _concurrently(url: str, n: int, delay_s: float = 0.0) -> list[httpx.Response]:
    body = {"inputs": {"image": np.zeros((1, 28, 28, 1)).tolist()}}
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(i: int) -> httpx.Response:
            await asyncio.sleep(i * delay_s)
            return await client.post(f"{url}/predict", json=body)

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_concurrent_requests_share_model_calls(backends):
    with serving(backends["torch"], max_batch=8, max_wait_ms=200) as (url, _):
        answers = asyncio.run(_concurrently(url, 8))
        text = httpx.get(f"{url}/metrics").text
    assert [a.status_code for a in answers] == [200] * 8
    assert metric(text, "roadmap_batch_size_count") < 8  # fewer model calls than requests
    assert metric(text, "roadmap_batch_size_sum") == 8


def test_a_full_queue_answers_503_and_a_slow_answer_504(backends):
    with serving(backends["torch"], queue=1, max_wait_ms=300) as (url, _):
        first, second = asyncio.run(_concurrently(url, 2, delay_s=0.1))
    refused = first if first.status_code == 503 else second  # whichever got in second
    assert sorted([first.status_code, second.status_code]) == [200, 503]
    assert "queue full" in refused.json()["error"]
    with serving(backends["torch"], max_wait_ms=300, timeout_s=0.05) as (url, _):
        (late,) = asyncio.run(_concurrently(url, 1))
    assert late.status_code == 504 and "no answer within" in late.json()["error"]


def test_shutdown_finishes_the_requests_in_flight(backends):
    with serving(backends["torch"], max_wait_ms=1000) as (url, server):

        async def request_then_stop():
            pending = asyncio.ensure_future(_concurrently(url, 1))
            await asyncio.sleep(0.3)  # the request is in, waiting for company
            server.should_exit = True  # as SIGTERM does
            return await pending

        (answer,) = asyncio.run(request_then_stop())
    assert answer.status_code == 200


def test_onnx_backend_serves_the_torch_runs_export(runs, backends):
    export = pytest.importorskip("comparisons.export", reason="roadmap export not available")
    assert callable(export.export_run)
    onnx = load_backend(PROJECT, "onnx", runs / "mnist" / "torch" / "r1")
    batch = {"image": PROJECT.example_batch(2, seed=3)["image"]}
    with serving(onnx) as (url, _):
        answer = httpx.post(f"{url}/predict", json={"inputs": {"image": batch["image"].tolist()}})
        meta = httpx.get(f"{url}/metadata").json()
    assert meta["backend"] == "onnx" and answer.status_code == 200
    assert meta["weights_sha256"] == backends["torch"].metadata["weights_sha256"]
    expected = backends["torch"].predict(batch)
    np.testing.assert_allclose(answer.json()["outputs"], expected, rtol=1e-4, atol=1e-4)


def test_loadtest_measures_a_local_server_and_refuses_others(backends):
    with pytest.raises(ValueError, match="only targets"):
        check_local("http://10.0.0.1:8000")
    with serving(backends["torch"]) as (url, _):
        result = asyncio.run(load_test(url, [1, 4], duration_s=0.3, max_requests=40, warmup_s=0))
    for row in result["levels"]:
        assert row["ok"] == row["requests"] <= 40 and row["requests_per_s"] > 0
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]


def test_serve_without_a_run_is_a_clear_error(tmp_path, capsys):
    assert main(["serve", "mnist", "--backend", "torch", "--workdir", str(tmp_path)]) == 2
    assert "roadmap run mnist --framework torch" in capsys.readouterr().err


@pytest.mark.parametrize("project", list_projects(), ids=lambda p: p.name)
def test_every_project_is_served_from_its_registry_entry(project, tmp_path):
    config = project.config("smoke")
    path = tmp_path / project.name / "torch" / "r1"
    project.module("torch").train_and_evaluate(config, path, progress=False)
    backend = load_backend(project, "torch", path)
    batch = project.example_batch(2, seed=4, config=config)
    inputs = {name: batch[name] for name in project.model_inputs}
    _, state, _ = load_trained(project, "torch", path)
    loop = importlib.import_module("torchpath.common.loop")
    expected = project.module("torch").predict(state, loop.to_device(inputs)).numpy()
    with TestClient(create_app(lambda: backend, Settings(max_batch=4))) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.05)
        body = {"inputs": {name: value.tolist() for name, value in inputs.items()}}
        answer = client.post("/predict", json=body)
        shape = next(iter(backend.specs.values())).shape  # an image of the model's size
        pixels = np.zeros(shape, np.uint8)
        blank = png(pixels[..., 0] if len(shape) == 3 and shape[-1] == 1 else pixels)
        upload = client.post("/predict", files={"file": ("x.png", blank)})
    np.testing.assert_allclose(answer.json()["outputs"], expected, rtol=1e-5, atol=1e-5)
    assert upload.status_code == (200 if image_input(backend.specs) else 415), upload.text


def test_not_ready_until_the_model_is_loaded_and_warm(backends):
    loaded = threading.Event()

    def slow_loader():
        loaded.wait(30)
        return backends["torch"]

    with TestClient(create_app(slow_loader)) as client:
        assert client.get("/healthz").status_code == 200
        not_ready = client.get("/readyz")
        early = client.post("/predict", json={"inputs": {"image": [[[[0.0]]]]}})
        loaded.set()
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/readyz").json() == {"ready": True}
    assert not_ready.status_code == 503 and "loading" in not_ready.json()["error"]
    assert early.status_code == 503 and "not loaded yet" in early.json()["error"]


def test_a_failing_model_call_is_a_json_500_and_the_server_stays_up(backends):
    torch_backend = backends["torch"]

    def predict(batch):
        if batch["image"][0, 0, 0, 0] == 7.0:
            raise RuntimeError("boom")
        return torch_backend.predict(batch)

    failing = dataclasses.replace(torch_backend, predict=predict)
    image = np.zeros((1, 28, 28, 1))
    with TestClient(create_app(lambda: failing)) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.05)
        image[0, 0, 0, 0] = 7.0
        failed = client.post("/predict", json={"inputs": {"image": image.tolist()}})
        image[0, 0, 0, 0] = 0.0
        fine = client.post("/predict", json={"inputs": {"image": image.tolist()}})
    assert failed.status_code == 500 and failed.json() == {"error": "model error: RuntimeError"}
    assert fine.status_code == 200
