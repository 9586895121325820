"""Load an exported artifact in this process: a function from a numpy batch to numpy outputs.

Only the runtime a format needs is imported (onnxruntime for ONNX, torch for .pt2 and
TorchScript, jax for jax.export), so a server of one format does not pay for the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shared_data.configs.base import ConfigError

Predictor = Callable[[dict[str, np.ndarray]], np.ndarray]


def read_manifest(manifest_path: str | Path) -> dict[str, Any]:
    """The manifest.json of an export; a missing or unreadable one is a ConfigError."""
    path = Path(manifest_path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read export manifest {path}: {err}") from err


def _onnx(path: Path) -> Callable[..., Any]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda *arrays: session.run(None, dict(zip(names, arrays, strict=True)))[0]


def _torch_export(path: Path) -> Callable[..., Any]:
    import torch

    module = torch.export.load(str(path)).module()

    def call(*arrays):
        with torch.no_grad():
            return module(*(torch.from_numpy(a) for a in arrays)).numpy()

    return call


def _torchscript(path: Path) -> Callable[..., Any]:
    import torch

    module = torch.jit.load(str(path), map_location="cpu")

    def call(*arrays):
        with torch.no_grad():
            return module(*(torch.from_numpy(a) for a in arrays)).numpy()

    return call


def _jax_export(path: Path) -> Callable[..., Any]:
    import jax

    exported = jax.export.deserialize(bytearray(path.read_bytes()))
    return lambda *arrays: np.asarray(exported.call(*arrays))


LOADERS = {
    "onnx": _onnx,
    "torch.export": _torch_export,
    "torchscript": _torchscript,
    "jax.export": _jax_export,
}


def load_artifact(manifest_path: str | Path) -> Predictor:
    """Load the artifact a manifest names; returns batch -> outputs (numpy in, numpy out)."""
    manifest_path = Path(manifest_path)
    manifest = read_manifest(manifest_path)
    fmt = manifest["format"]
    if fmt not in LOADERS:
        raise ConfigError(f"{manifest_path}: no loader for format {fmt!r}")
    inputs = manifest["inputs"]
    call = LOADERS[fmt](manifest_path.parent / manifest["artifact"]["file"])

    def predict(batch: dict[str, np.ndarray]) -> np.ndarray:
        missing = [i["name"] for i in inputs if i["name"] not in batch]
        if missing:
            raise ValueError(f"batch lacks model input(s) {', '.join(missing)}")
        arrays = [np.ascontiguousarray(batch[i["name"]], dtype=i["dtype"]) for i in inputs]
        return np.asarray(call(*arrays))

    return predict


def load_text_encoder(manifest_path: str | Path) -> Callable[[Any], dict[str, np.ndarray]]:
    """texts -> model inputs, with the tokenizer(s) the export holds (text.encode_request).

    A ConfigError when the export reads no text or a tokenizer file differs from the
    manifest's sha256.
    """
    from comparisons.export.text import encode_request, from_manifest

    manifest_path = Path(manifest_path)
    inputs = from_manifest(read_manifest(manifest_path), manifest_path.parent)
    if not inputs:
        raise ConfigError(f"{manifest_path}: this export reads no text (no text_inputs)")
    return lambda text: encode_request(inputs, text)
