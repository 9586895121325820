"""The JAX half of `roadmap export`: jax.export, serialized StableHLO with a symbolic batch.

The exported function is the project's `predict` with the trained parameters closed over
(they become constants of the module), taking the model inputs positionally in
`model_inputs` order, in the data layer's layout (NHWC images). torch_export.py holds the
same names for PyTorch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

FORMATS = ("jax.export",)


def unavailable(fmt: str) -> str | None:
    """Why `fmt` cannot be exported by this JAX, or None when it can."""
    return None


def weight_arrays(state) -> list[tuple[str, np.ndarray]]:
    """params and batch_stats as (keypath, array), sorted by keypath (optimizer state left out)."""
    tree = {"params": state.params, "batch_stats": getattr(state, "batch_stats", None) or {}}
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    named = [(jax.tree_util.keystr(path), np.asarray(leaf)) for path, leaf in leaves]
    return sorted(named, key=lambda item: item[0])


def checkpoint_files(run_path: Path, step: int) -> list[Path]:
    """Every file of the Orbax checkpoint folder the weights of `step` were restored from."""
    folder = Path(run_path) / "checkpoints" / str(step)
    return sorted(p for p in folder.rglob("*") if p.is_file())


def live_predict(project, state, batch: dict[str, np.ndarray]) -> np.ndarray:
    """The live model's `predict` on a numpy batch, the reference outputs of verification."""
    return np.asarray(project.module("jax").predict(state, batch))


def export(fmt: str, project, state, batch, path: Path) -> dict[str, Any]:
    """Write `fmt`'s artifact of the model to `path`; format-specific facts for the manifest."""
    if fmt != "jax.export":
        raise ValueError(f"unknown jax export format {fmt!r}")
    names = tuple(project.model_inputs)
    predict = project.module("jax").predict

    def fn(*inputs):
        return predict(state, dict(zip(names, inputs, strict=True)))

    # One symbol shared by every input: they all have the same number of rows.
    (rows,) = jax.export.symbolic_shape("b")
    specs = [jax.ShapeDtypeStruct((rows, *batch[n].shape[1:]), batch[n].dtype) for n in names]
    exported = jax.export.export(jax.jit(fn))(*specs)
    path.write_bytes(bytes(exported.serialize()))
    return {
        "calling_convention_version": exported.calling_convention_version,
        "in_avals": [str(a) for a in exported.in_avals],
        "out_avals": [str(a) for a in exported.out_avals],
        "platforms": list(exported.platforms),
        "dynamic_batch": "symbolic dimension b",
    }
