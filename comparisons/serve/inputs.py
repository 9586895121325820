"""Request bodies to numpy batches, checked against the model's input schema.

Three encodings: JSON `{"inputs": {name: nested lists}}` (a batch, NHWC images as the data
layer yields them); for models whose inputs are made from text (an input spec naming a
tokenizer), JSON `{"text": "..."}` or `{"text": ["...", ...]}`, encoded with the run's own
tokenizer (comparisons/export/text.py); and, for projects whose one model input is an
image, a PNG uploaded as multipart field `file`, normalised the way the data layer
normalises that input. Every
problem becomes a `BadRequest` with an HTTP status and a message that says what was expected;
nothing is unpickled or evaluated, only parsed (json, PNG).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from comparisons.export.text import encode_request
from comparisons.registry import InputSpec
from shared_data.batches import MNIST_MEAN, MNIST_STD, to_float_nhwc

Batch = dict[str, np.ndarray]


class BadRequest(Exception):
    """A request the server refuses: `status` (4xx) and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _shape_text(spec: InputSpec) -> str:
    return "[N, " + ", ".join(str(d) for d in spec.shape) + "]" if spec.shape else "[N]"


def _to_array(name: str, value: Any, spec: InputSpec) -> np.ndarray:
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError, RecursionError) as err:
        raise BadRequest(422, f"{name}: not a rectangular array of numbers ({err})") from None
    if array.size == 0 or array.ndim == 0:
        raise BadRequest(422, f"{name}: empty batch; send at least one example {_shape_text(spec)}")
    if array.shape[1:] != spec.shape:
        raise BadRequest(
            422, f"{name}: shape {list(array.shape)} does not match {_shape_text(spec)}"
        )
    integer = np.issubdtype(np.dtype(spec.dtype), np.integer)
    allowed = "iu" if integer else "iuf"
    if array.dtype.kind not in allowed:
        kind = "integers" if integer else "numbers"
        raise BadRequest(422, f"{name}: dtype must be {spec.dtype} ({kind}), got {array.dtype}")
    if integer:
        low, high = 0, spec.num_classes or np.iinfo(spec.dtype).max
        if array.min() < low or array.max() >= high:
            raise BadRequest(422, f"{name}: values must lie in [0, {high}) for {spec.dtype}")
        return array.astype(spec.dtype)
    with np.errstate(over="ignore"):
        cast = array.astype(spec.dtype)
    if not np.isfinite(cast).all():
        raise BadRequest(422, f"{name}: NaN or infinite values (or beyond {spec.dtype} range)")
    return cast


def parse_json(
    body: bytes,
    specs: dict[str, InputSpec],
    max_examples: int,
    text: Mapping[str, Any] | None = None,
) -> Batch:
    """The batch of a JSON body `{"inputs": {name: nested lists}}`, or `{"text": ...}` for a
    model whose `text` inputs (name -> export.text.TextInput) are made from text."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise BadRequest(400, f"invalid JSON: {str(err)[:200]}") from None
    if isinstance(document, dict) and "text" in document and "inputs" not in document:
        if not text:
            raise BadRequest(422, 'this model reads no text; send {"inputs": {...}}')
        try:
            batch = encode_request(text, document["text"])
        except ValueError as err:
            raise BadRequest(422, f"text: {err}") from None
        return _check_size(batch, max_examples)
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), dict):
        names = ", ".join(specs)
        also = ' or {"text": "..." or [...]}' if text else ""
        raise BadRequest(
            422, f'expected a JSON object {{"inputs": {{...}}}} with fields: {names}{also}'
        )
    inputs = document["inputs"]
    missing = [name for name in specs if name not in inputs]
    unknown = [name for name in inputs if name not in specs]
    if missing or unknown:
        raise BadRequest(
            422, f"inputs must be exactly {sorted(specs)}; missing {missing}, unknown {unknown}"
        )
    batch = {name: _to_array(name, inputs[name], spec) for name, spec in specs.items()}
    return _check_size(batch, max_examples)


def _check_size(batch: Batch, max_examples: int) -> Batch:
    sizes = {len(v) for v in batch.values()}
    if len(sizes) != 1:
        raise BadRequest(422, f"every input needs the same batch size, got {sorted(sizes)}")
    size = sizes.pop()
    if size > max_examples:
        raise BadRequest(413, f"{size} examples in one request; the limit is {max_examples}")
    return batch


def image_input(specs: dict[str, InputSpec]) -> str | None:
    """The name of the model's one image input [H, W, 1 or 3], or None (no PNG uploads)."""
    if len(specs) != 1:
        return None
    name, spec = next(iter(specs.items()))
    is_image = len(spec.shape) == 3 and spec.shape[2] in (1, 3) and spec.num_classes is None
    return name if is_image else None


def parse_png(data: bytes, specs: dict[str, InputSpec]) -> Batch:
    """A batch of one from PNG bytes: exact size, grey or RGB, normalised as the data layer does."""
    from PIL import Image

    name = image_input(specs)
    if name is None:
        raise BadRequest(415, "this model's inputs are not one image; send JSON")
    spec = specs[name]
    height, width, channels = spec.shape
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise BadRequest(422, "file is not a PNG image")
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
        # Size first, from the header: a decompression bomb is refused before decoding.
        if image.size != (width, height):
            raise BadRequest(
                422, f"image is {image.size[0]}x{image.size[1]}; this model takes {width}x{height}"
            )
        pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except BadRequest:
        raise
    except Exception:  # noqa: BLE001 - PIL raises many types; any failure on these bytes is theirs
        raise BadRequest(422, "corrupt PNG image: it does not decode") from None
    # The data layer's normalisation for this kind of input: classifiers see
    # (x/255 - mean) / std (the spec's per-channel values, MNIST's by default), generative
    # models ("unit", "binary") grey levels in [0, 1].
    if spec.kind == "normal":
        mean = spec.mean if spec.mean is not None else MNIST_MEAN
        std = spec.std if spec.std is not None else MNIST_STD
    else:
        mean, std = 0.0, 1.0
    return {name: to_float_nhwc(pixels[None], mean, std).reshape(1, *spec.shape)}
