"""The models a server can serve: a finished run in JAX or PyTorch, or its ONNX export.

Each backend turns a numpy batch of the project's model inputs (NHWC images, as the data
layer yields them) into a numpy array of outputs, and describes itself for GET /metadata.
Weights come only from the run's own files: its checkpoint (Orbax, or
`torch.load(weights_only=True)`) through `comparisons.runfolders.load_trained`, or the artifact
that `roadmap export` wrote and verified. Nothing here names a project.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from comparisons.export.text import from_manifest, load_text_inputs
from comparisons.registry import InputSpec, Project
from comparisons.runfolders import load_trained, resolve_run

BACKENDS = ("jax", "torch", "onnx")
Batch = dict[str, np.ndarray]


@dataclasses.dataclass
class Backend:
    """A loaded model: `predict(batch) -> outputs` on numpy, and what GET /metadata shows."""

    name: str
    project: Project
    specs: dict[str, InputSpec]  # the model inputs, without the batch dimension
    predict: Callable[[Batch], np.ndarray]
    metadata: dict[str, Any]
    warmup: Callable[[int], None] = lambda max_batch: None  # compile/prime up to max_batch
    text: dict[str, Any] = dataclasses.field(default_factory=dict)  # inputs made from text
    classifier: bool = False  # outputs are class logits: answers add their probabilities

    def run_warmup(self, max_batch: int) -> None:
        """Prime the model (compilation, allocator) so the first request is not the slow one."""
        self.warmup(max_batch)
        rng = np.random.default_rng(0)
        self.predict({name: spec.sample(rng, 1) for name, spec in self.specs.items()})


def schema(specs: dict[str, InputSpec]) -> dict[str, Any]:
    """The input schema of GET /metadata: shape with a leading null batch dimension."""
    return {
        name: {
            "shape": [None, *spec.shape],
            "dtype": spec.dtype,
            "kind": spec.kind,
            **({"num_classes": spec.num_classes} if spec.num_classes is not None else {}),
        }
        for name, spec in specs.items()
    }


def _model_specs(project: Project, config: Any) -> dict[str, InputSpec]:
    specs = project.input_specs(config)
    return {name: specs[name] for name in project.model_inputs}


def _with_text(backend: Backend, config: Any, text: dict[str, Any]) -> Backend:
    """`backend` taking raw text for the inputs in `text` (export.text.TextInput), and saying
    whether its outputs are class logits (a task judged by accuracy)."""
    backend.text = text
    backend.classifier = backend.project.task(config).headline == "accuracy"
    backend.metadata["text_inputs"] = [t.record() for t in text.values()]
    return backend


def _run_metadata(project, backend, config, path: Path, step: int) -> dict[str, Any]:
    return {
        "project": project.name,
        "model": getattr(config, "model", None),
        "backend": backend,
        "run_id": path.name,
        "run_path": str(path),
        "step": step,
    }


def _load_jax(project: Project, path: Path, threads: int | None = None) -> Backend:
    import jax

    from comparisons.export import jax_export
    from comparisons.export.core import sha256_arrays
    from jaxpath.common.loop import to_device

    config, state, step = load_trained(project, "jax", path)
    compiled = jax.jit(project.module("jax").predict)

    def bucket(n: int) -> int:
        # jit compiles once per shape: pad to powers of two so a server that sees every
        # batch size from 1 to 32 compiles six programs, all during warm-up.
        return 1 << max(0, (n - 1).bit_length())

    def predict(batch: Batch) -> np.ndarray:
        n = len(next(iter(batch.values())))
        padded = {
            k: np.concatenate([v, np.zeros((bucket(n) - n, *v.shape[1:]), v.dtype)])
            for k, v in batch.items()
        }
        return np.asarray(compiled(state, to_device(padded)))[:n]

    def warmup(max_batch: int) -> None:
        specs, n = _model_specs(project, config), 1
        while n <= max(1, bucket(max_batch)):
            predict({k: np.zeros((n, *s.shape), s.dtype) for k, s in specs.items()})
            n *= 2

    meta = _run_metadata(project, "jax", config, path, step)
    # `roadmap export`'s checksum of the same weights, so a run and its export show one value.
    meta["weights_sha256"] = sha256_arrays(jax_export.weight_arrays(state))
    meta["versions"] = {"jax": jax.__version__}
    backend = Backend("jax", project, _model_specs(project, config), predict, meta, warmup)
    return _with_text(backend, config, load_text_inputs(backend.specs, path))


def _load_torch(project: Project, path: Path, threads: int | None = None) -> Backend:
    import torch

    from comparisons.export import torch_export
    from comparisons.export.core import sha256_arrays
    from torchpath.common.loop import to_device

    if threads:
        # The event loop parses requests on a core of its own; torch's intra-op threads
        # spinning on that core too made batched serving 1.7x slower on 2 cores.
        torch.set_num_threads(threads)
    config, state, step = load_trained(project, "torch", path)
    train = project.module("torch")

    def predict(batch: Batch) -> np.ndarray:
        with torch.inference_mode():
            return train.predict(state, to_device(batch)).cpu().numpy()

    meta = _run_metadata(project, "torch", config, path, step)
    meta["weights_sha256"] = sha256_arrays(torch_export.weight_arrays(state))
    meta["versions"] = {"torch": torch.__version__}
    backend = Backend("torch", project, _model_specs(project, config), predict, meta)
    return _with_text(backend, config, load_text_inputs(backend.specs, path))


def _load_onnx(project: Project, path: Path, threads: int | None = None) -> Backend:
    # Imported here: the exporter is its own tool, and the other backends must not need it.
    from comparisons import export

    manifest_path = path / "export" / "onnx" / "manifest.json"
    if not manifest_path.is_file():
        manifest_path = Path(export.export_run(project.name, "torch", "onnx", path))
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    run_predict = export.load_artifact(manifest_path)
    config = _stored_config(project, path)
    meta = _run_metadata(project, "onnx", config, path, manifest.get("step"))
    meta["manifest"] = str(manifest_path)
    meta["weights_sha256"] = manifest.get("weights", {}).get("sha256")
    meta["artifact_sha256"] = manifest.get("artifact", {}).get("sha256")
    meta["versions"] = manifest.get("versions", {})

    def predict(batch: Batch) -> np.ndarray:
        return np.asarray(run_predict(batch))

    backend = Backend("onnx", project, _model_specs(project, config), predict, meta)
    # The tokenizer the export holds (checked against the manifest's sha256).
    return _with_text(backend, config, from_manifest(manifest, manifest_path.parent))


def _stored_config(project: Project, path: Path) -> Any:
    from shared_data.configs.base import from_dict
    from shared_data.runlog import CONFIG_FILE

    stored = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    stored.pop("framework", None)
    stored["data_dir"] = None
    return from_dict(type(project.config()), stored)


def run_path(project: Project, backend: str, workdir: str | Path, run_id: str | None) -> Path:
    """The run a backend serves: the project's newest (or `run_id`) run; ONNX exports torch's."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    return resolve_run(workdir, project.name, "torch" if backend == "onnx" else backend, run_id)


def load_backend(
    project: Project, backend: str, path: str | Path, threads: int | None = None
) -> Backend:
    """Load run folder `path` for `backend` (jax, torch or onnx); torch uses `threads` threads."""
    # XLA's and onnxruntime's thread pools are sized when they start, by their own settings.
    loaders = {"jax": _load_jax, "torch": _load_torch, "onnx": _load_onnx}
    return loaders[backend](project, Path(path), threads)
