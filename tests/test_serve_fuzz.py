"""Fuzzing POST /predict with hypothesis: whatever the body, the answer is never a 5xx."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from comparisons.registry import get_project
from comparisons.serve import Backend, Settings, create_app
from torchpath.common.loop import to_device

PROJECT = get_project("mnist")
LIMIT = 64 * 1024  # a small body limit, so that "huge" bodies are quick to make
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def client():
    """The app in-process (its lifespan runs) over an untrained torch CNN: the schema is the
    target here, not the weights."""
    train = PROJECT.module("torch")
    config = PROJECT.config("smoke")
    state = train.create_state(config, 1)
    specs = {"image": PROJECT.input_specs(config)["image"]}
    predict = lambda batch: train.predict(state, to_device(batch)).numpy()  # noqa: E731
    backend = Backend("torch", PROJECT, specs, predict, {"backend": "torch"})
    app = create_app(lambda: backend, Settings(max_batch=4, max_body_bytes=LIMIT))
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield client


def check(response) -> None:
    """No 5xx; every refusal carries a JSON error message."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=40,
)
dtypes = st.sampled_from(["float64", "float32", "int64", "uint8", "bool", "int8"])


@FUZZ
@given(value=json_values, wrap=st.sampled_from(["raw", "inputs", "image"]))
def test_any_json_document(client, value, wrap):
    document = {"raw": value, "inputs": {"inputs": value}, "image": {"inputs": {"image": value}}}
    body = json.dumps(document[wrap]).encode()  # NaN and Infinity included, as Python writes
    check(client.post("/predict", content=body, headers={"content-type": "application/json"}))


@FUZZ
@given(
    array=hnp.arrays(
        dtypes,
        st.one_of(
            hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=3),
            st.tuples(st.integers(0, 5), st.just(28), st.just(28), st.sampled_from([1, 3])),
        ),
    ),
    poison=st.sampled_from([None, np.nan, np.inf, -np.inf, 1e39]),
)
def test_arrays_of_any_shape_and_dtype(client, array, poison):
    if poison is not None and array.size and array.dtype.kind == "f":
        array = array.astype(np.float64)
        array.flat[0] = poison
    body = json.dumps({"inputs": {"image": array.tolist()}}).encode()
    check(client.post("/predict", content=body, headers={"content-type": "application/json"}))


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=2048),
        st.integers(0, 3 * LIMIT).map(lambda n: b" " * n),
        st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),  # nesting past recursion
    ),
    content_type=st.sampled_from(
        ["application/json", "multipart/form-data", "multipart/form-data; boundary=x",
         "image/png", "text/plain", "", "application/json; charset=latin-1"]
    ) | st.text(max_size=30).filter(lambda t: "\n" not in t and "\r" not in t),
)  # fmt: skip
def test_raw_bytes_under_any_content_type(client, body, content_type):
    try:
        response = client.post("/predict", content=body, headers={"content-type": content_type})
    except UnicodeEncodeError:  # a header httpx cannot send at all never reaches the server
        return
    check(response)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=1024),
        st.binary(max_size=512).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
        hnp.arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))).map(_png),
        hnp.arrays(np.uint8, st.tuples(st.just(28), st.just(28), st.sampled_from([3, 4]))).map(
            _png
        ),
        hnp.arrays(np.uint8, (28, 28)).map(_png).flatmap(
            lambda png: st.integers(0, len(png)).map(lambda cut: png[:cut])
        ),
    ),
    field=st.sampled_from(["file", "image", ""]),
)  # fmt: skip
def test_random_bytes_as_an_uploaded_png(client, data, field):
    check(client.post("/predict", files={field or "x": ("digit.png", data, "image/png")}))
