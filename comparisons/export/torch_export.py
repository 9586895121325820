"""The PyTorch half of `roadmap export`: torch.export (.pt2), ONNX (dynamo) and TorchScript.

Every format exports the same wrapper module: it takes the model inputs in the data layer's
layout (NHWC images, as shared_data yields them), does what `to_device` does, and calls the
project's `predict` in eval mode, so the artifacts of both frameworks share one input schema.
jax_export.py holds the same names for JAX.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchpath.common.loop import to_device, to_layout

FORMATS = ("torch.export", "onnx", "torchscript")
MAX_BATCH = 65536  # the dynamic batch dimension's upper bound (torch.export wants one)


def unavailable(fmt: str) -> str | None:
    """Why `fmt` cannot be exported by this torch, or None when it can."""
    if fmt == "torchscript" and not hasattr(torch.jit, "trace"):
        return f"torch {torch.__version__} has no torch.jit.trace (TorchScript was removed)"
    return None


class DataLayoutModel(torch.nn.Module):
    """predict(state, batch) on data-layer inputs (NHWC), positional in `model_inputs` order."""

    def __init__(self, predict, state, names: tuple[str, ...]):
        super().__init__()
        self.model = state.model  # registers the parameters and buffers with the export
        self._predict, self._state, self._names = predict, state, names

    def forward(self, *inputs):
        batch = {name: to_layout(name, x) for name, x in zip(self._names, inputs, strict=True)}
        return self._predict(self._state, batch)


def weight_arrays(state) -> list[tuple[str, np.ndarray]]:
    """The model's state_dict (parameters and buffers) as (name, array), sorted by name."""
    items = state.model.state_dict().items()
    return sorted(((n, t.detach().cpu().numpy()) for n, t in items), key=lambda i: i[0])


def checkpoint_files(run_path: Path, step: int) -> list[Path]:
    """The checkpoint file the weights of `step` were restored from."""
    return [Path(run_path) / "checkpoints" / f"ckpt_{step}.pt"]


def live_predict(project, state, batch: dict[str, np.ndarray]) -> np.ndarray:
    """The live model's `predict` on a numpy batch, the reference outputs of verification."""
    train = project.module("torch")
    with torch.no_grad():
        return train.predict(state, to_device(batch)).detach().cpu().numpy()


def _example(batch: dict[str, np.ndarray], names) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(batch[n])) for n in names)


def export(fmt: str, project, state, batch, path: Path) -> dict[str, Any]:
    """Write `fmt`'s artifact of the model to `path`; format-specific facts for the manifest."""
    names = tuple(project.model_inputs)
    module = DataLayoutModel(project.module("torch").predict, state, names).eval()
    args = _example(batch, names)
    # The example batch has more than one row: torch.export specialises sizes 0 and 1.
    dim = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dynamic_shapes = (tuple({0: dim} for _ in names),)  # forward(*inputs): one tuple
    details: dict[str, Any] = {"dynamic_batch": {"min": 1, "max": MAX_BATCH}}
    if fmt == "torch.export":
        program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes)
        torch.export.save(program, str(path))
    elif fmt == "onnx":
        chatter = io.StringIO()  # the dynamo exporter prints its progress
        with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=True,
                input_names=list(names),
                output_names=["output"],
                dynamic_shapes=dynamic_shapes,
                external_data=False,
            )
        details["opset"] = int(program.model.opset_imports.get("", 0))
        details["exporter"] = "torch.onnx.export(dynamo=True)"
    elif fmt == "torchscript":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            traced = torch.jit.trace(module, args, strict=False)
            torch.jit.save(traced, str(path))
        # Deprecated in torch 2.14: recorded so a reader of the manifest knows, not fatal.
        details["warnings"] = sorted({str(w.message).splitlines()[0] for w in caught})
        details["dynamic_batch"] = "traced at one batch size; verified at two"
    else:
        raise ValueError(f"unknown torch export format {fmt!r}")
    return details
