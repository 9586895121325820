"""`roadmap export`: export a finished run, write its manifest, verify it in a fresh process.

Framework-neutral: the formats themselves live in torch_export.py and jax_export.py (the
same names in both, found by naming convention), the loaders in loaders.py, the fresh-process
check in verify.py. Layout: `<run folder>/export/<format>/{<artifact>, manifest.json}`.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from comparisons.env import pin_cpu_fp32, versions
from comparisons.export.text import (
    CHECK_TEXTS,
    copy_tokenizers,
    encode_request,
    load_text_inputs,
    sha256_of,
)
from comparisons.registry import get_project
from comparisons.runfolders import load_trained, resolve_run
from shared_data.configs.base import ConfigError
from shared_data.runlog import CONFIG_FILE, write_json

FORMATS = {"torch": ("torch.export", "onnx", "torchscript"), "jax": ("jax.export",)}
ARTIFACTS = {
    "torch.export": "model.pt2",
    "onnx": "model.onnx",
    "torchscript": "model.ts.pt",
    "jax.export": "model.jax_export",
}
# Formats asked for that are deliberately absent, and why (docs/EXPORT.md has the details).
NOT_SUPPORTED = {
    ("jax", "onnx"): "jax2onnx's newest release (0.17.1) requires orbax-checkpoint<0.11.37, "
    "which conflicts with the pinned >=0.12, so it is not a dependency (docs/EXPORT.md); "
    "export jax.export, or torch's onnx",
}
MANIFEST = "manifest.json"
TOLERANCE = 1e-4  # max abs difference to the live model's outputs (fp32 on both sides)
VERIFY_BATCH_SIZES = (1, 7)
TRACE_BATCH_SIZE = 3  # neither 1 nor a verified size: the batch dimension must stay symbolic
VERIFY_TIMEOUT_S = 600
WEIGHTS_METHOD = (
    "sha256 over the state's inference arrays sorted by name (torch: model.state_dict(); "
    "jax: params and batch_stats keypaths), each as '<name>\\0<dtype>\\0<shape>\\0' then its "
    "little-endian C-order bytes; optimizer state left out"
)
VERSION_PACKAGES = ("numpy", "jax", "jaxlib", "flax", "torch", "onnx", "onnxscript", "onnxruntime")


class VerificationError(ConfigError):
    """An export whose reloaded outputs differ from the live model's (the CLI prints it)."""


def _backend(framework: str):
    if framework not in FORMATS:
        raise ConfigError(f"unknown framework {framework!r}; known: {', '.join(FORMATS)}")
    return importlib.import_module(f"comparisons.export.{framework}_export")


def available_formats(framework: str) -> tuple[str, ...]:
    """The formats of `framework` that the installed packages can export."""
    backend = _backend(framework)
    return tuple(f for f in FORMATS[framework] if backend.unavailable(f) is None)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_arrays(items: list[tuple[str, np.ndarray]]) -> str:
    """Hex sha256 of named arrays in the given order (see WEIGHTS_METHOD)."""
    digest = hashlib.sha256()
    for name, array in items:
        array = np.ascontiguousarray(array)
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{name}\0{array.dtype.str}\0{list(array.shape)}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _weights_record(backend, state, run_path: Path, step: int) -> dict[str, Any]:
    items = backend.weight_arrays(state)
    files = backend.checkpoint_files(run_path, step)
    return {
        "sha256": sha256_arrays(items),
        "method": WEIGHTS_METHOD,
        "arrays": len(items),
        "checkpoint_step": step,
        "checkpoint_files": {str(p.relative_to(run_path)): sha256_file(p) for p in files},
    }


def _model_batch(project, config, size: int, seed: int) -> dict[str, np.ndarray]:
    batch = project.example_batch(size, seed=seed, config=config)
    return {name: batch[name] for name in project.model_inputs}


def _model_specs(project, config) -> dict[str, Any]:
    specs = project.input_specs(config)
    return {name: specs[name] for name in project.model_inputs}


def _text_case(project, texts) -> dict[str, np.ndarray] | None:
    """CHECK_TEXTS as model inputs, or None when the model does not read text alone."""
    if not texts:
        return None
    batch = encode_request(texts, {name: list(CHECK_TEXTS) for name in texts})
    return batch if set(batch) == set(project.model_inputs) else None


def _input_schema(project, config) -> list[dict[str, Any]]:
    specs = project.input_specs(config)
    return [
        {"name": n, "shape": [None, *specs[n].shape], "dtype": specs[n].dtype}
        for n in project.model_inputs
    ]


def _fresh_process_check(manifest_path: Path, cases: dict[int, dict[str, np.ndarray]]):
    """Run verify.py in a new interpreter on `cases`; its parsed JSON line."""
    with tempfile.TemporaryDirectory(prefix="roadmap-export-") as tmp:
        cases_path = Path(tmp) / "cases.npz"
        flat = {f"{n}/{key}": value for n, batch in cases.items() for key, value in batch.items()}
        np.savez(cases_path, **flat)
        env = dict(os.environ)
        env.setdefault("JAX_PLATFORMS", "cpu")
        root = str(Path(__file__).resolve().parents[2])  # importable even when not installed
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "comparisons.export.verify", str(manifest_path)]
        done = subprocess.run(
            [*command, str(cases_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=VERIFY_TIMEOUT_S,
        )
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return {"error": f"verify process exited {done.returncode}: {tail}"}


def _verification(manifest_path, cases, expected, tolerance) -> dict[str, Any]:
    """Check the artifact in a fresh process on `cases` (batch size -> batch; "text" -> the
    CHECK_TEXTS, which that process encodes itself with the exported tokenizer)."""
    start = time.perf_counter()
    inputs = {n: {**batch, "expected": expected[n]} for n, batch in cases.items()}
    if "text" in inputs:
        inputs["text"] = {"texts": np.array(CHECK_TEXTS), "expected": expected["text"]}
    found = _fresh_process_check(manifest_path, inputs)
    result: dict[str, Any] = {
        "process": "fresh: python -m comparisons.export.verify",
        "tolerance": tolerance,
        "batch_sizes": sorted(n for n in cases if n != "text"),
        "seconds": round(time.perf_counter() - start, 2),
        "batches": found.get("batches", {}),
        "error": found.get("error"),
    }
    problems = [result["error"]] if result["error"] else []
    diffs = []
    for size, entry in result["batches"].items():
        diff = entry.get("max_abs_diff")
        if entry.get("error"):
            problems.append(f"batch size {size}: {entry['error']}")
        elif not isinstance(diff, float) or not diff <= tolerance:
            problems.append(f"batch size {size}: max abs diff {diff} > {tolerance}")
        else:
            diffs.append(diff)
    if not problems and len(result["batches"]) != len(cases):
        problems.append(f"verified {len(result['batches'])} batch sizes of {len(cases)}")
    result["max_abs_diff"] = max(diffs) if diffs and not problems else None
    result["problems"] = problems
    result["passed"] = not problems
    return result


def export_run(
    project_name: str,
    framework: str,
    fmt: str,
    run_path: str | Path,
    *,
    tolerance: float = TOLERANCE,
    batch_sizes: tuple[int, ...] = VERIFY_BATCH_SIZES,
) -> Path:
    """Export run `run_path` as `fmt`, verify it in a fresh process; the manifest's path."""
    project = get_project(project_name)
    backend = _backend(framework)
    if (framework, fmt) in NOT_SUPPORTED:
        raise ConfigError(
            f"format {fmt!r} is not supported for {framework}: {NOT_SUPPORTED[framework, fmt]}"
        )
    if fmt not in FORMATS[framework]:
        raise ConfigError(
            f"format {fmt!r} is not one of {framework}'s: {', '.join(FORMATS[framework])}"
        )
    why = backend.unavailable(fmt)
    if why:
        raise ConfigError(f"format {fmt!r} is unavailable: {why}")
    run_path = Path(run_path)
    if not (run_path / CONFIG_FILE).is_file():
        raise ConfigError(f"no finished run at {run_path} (no {CONFIG_FILE})")
    pin_cpu_fp32()
    config, state, step = load_trained(project, framework, run_path)
    texts = load_text_inputs(_model_specs(project, config), run_path)
    out_dir = run_path / "export" / fmt
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = out_dir / ARTIFACTS[fmt]
    tmp = out_dir / f".tmp{os.getpid()}.{artifact.name}"  # keeps the suffix torch checks
    try:
        trace_batch = _model_batch(project, config, TRACE_BATCH_SIZE, seed=1)
        details = backend.export(fmt, project, state, trace_batch, tmp)
        os.replace(tmp, artifact)  # readers never see half an artifact
    finally:
        tmp.unlink(missing_ok=True)
    texts = copy_tokenizers(texts, out_dir)  # the export reads text without the run folder
    cases = {n: _model_batch(project, config, n, seed=n) for n in batch_sizes}
    if (text_batch := _text_case(project, texts)) is not None:
        cases["text"] = text_batch
    expected = {n: backend.live_predict(project, state, batch) for n, batch in cases.items()}
    reference = expected[max(batch_sizes)]
    manifest = {
        "project": project.name,
        "framework": framework,
        "format": fmt,
        "run_id": run_path.name,
        "step": step,
        "inputs": _input_schema(project, config),
        # Inputs made from text: the tokenizer copied beside the artifact, and how to pad.
        "text_inputs": [text.record() for text in texts.values()],
        "layout": "the data layer's: images NHWC float32, as shared_data yields them",
        "output": {"shape": [None, *reference.shape[1:]], "dtype": str(reference.dtype)},
        "artifact": {
            "file": artifact.name,
            "sha256": sha256_file(artifact),
            "bytes": artifact.stat().st_size,
        },
        "weights": _weights_record(backend, state, run_path, step),
        "details": details,
        "versions": versions(VERSION_PACKAGES),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "verification": {"passed": None, "status": "pending"},
    }
    manifest_path = out_dir / MANIFEST
    write_json(manifest_path, manifest)  # verify.py loads the artifact through the manifest
    manifest["verification"] = _verification(manifest_path, cases, expected, tolerance)
    write_json(manifest_path, manifest)
    if not manifest["verification"]["passed"]:
        raise VerificationError(
            f"{fmt} export of {project.name} ({framework}) failed verification: "
            f"{'; '.join(manifest['verification']['problems'])} (manifest: {manifest_path})"
        )
    return manifest_path


def verify_export(manifest_path: str | Path, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Re-check an export against its run now: artifact and weights sha256, fresh-process run."""
    from comparisons.export.loaders import read_manifest

    manifest_path = Path(manifest_path)
    manifest = read_manifest(manifest_path)
    run_path = manifest_path.resolve().parents[2]  # <run>/export/<format>/manifest.json
    project = get_project(manifest["project"])
    backend = _backend(manifest["framework"])
    problems = []
    artifact = manifest_path.parent / manifest["artifact"]["file"]
    if not artifact.is_file() or sha256_file(artifact) != manifest["artifact"]["sha256"]:
        problems.append(f"artifact {artifact.name}: sha256 differs from the manifest's")
    pin_cpu_fp32()
    config, state, step = load_trained(project, manifest["framework"], run_path)
    weights = _weights_record(backend, state, run_path, step)
    if weights["sha256"] != manifest["weights"]["sha256"]:
        problems.append(f"weights of the run (step {step}): sha256 differs from the manifest's")
    texts = load_text_inputs(_model_specs(project, config), run_path)
    for entry in manifest.get("text_inputs", []):
        run_copy = texts.get(entry["field"])
        if run_copy is None or sha256_of(run_copy.path) != entry["tokenizer"]["sha256"]:
            problems.append(f"tokenizer of {entry['field']!r}: the run's differs from the export's")
    sizes = tuple(manifest["verification"].get("batch_sizes") or VERIFY_BATCH_SIZES)
    cases = {n: _model_batch(project, config, n, seed=n) for n in sizes}
    if manifest.get("text_inputs") and (text_batch := _text_case(project, texts)) is not None:
        cases["text"] = text_batch
    expected = {n: backend.live_predict(project, state, batch) for n, batch in cases.items()}
    result = _verification(manifest_path, cases, expected, tolerance)
    result["problems"] = problems + result["problems"]
    result["passed"] = not result["problems"]
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `roadmap export` (the CLI adds project and --workdir)."""
    formats = sorted({f for fmts in FORMATS.values() for f in fmts})
    parser.add_argument("--framework", required=True, choices=sorted(FORMATS))
    parser.add_argument(
        "--format",
        dest="fmt",
        required=True,
        choices=[*formats, "all"],
        help="torch: torch.export, onnx, torchscript; jax: jax.export; all: every one",
    )
    parser.add_argument("--run", dest="run", help="run id (default: the newest run)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="re-verify an existing export (checksums and a fresh-process run) instead",
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of `roadmap export`: one line per format; 1 if a check fails."""
    path = resolve_run(args.workdir, args.project, args.framework, args.run)
    formats = available_formats(args.framework) if args.fmt == "all" else (args.fmt,)
    status = 0
    for fmt in formats:
        if args.check:
            result = verify_export(path / "export" / fmt / MANIFEST)
            if not result["passed"]:
                print(f"{fmt}: FAILED: {'; '.join(result['problems'])}", file=sys.stderr)
                status = 1
                continue
        else:
            result = read_json(export_run(args.project, args.framework, fmt, path))
            result = result["verification"]
        diffs = ", ".join(
            f"{'' if n == 'text' else 'batch '}{n}: {e['max_abs_diff']:.2e}"
            for n, e in result["batches"].items()
        )
        print(f"{fmt}: {path / 'export' / fmt} verified in a fresh process ({diffs})")
    return status


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file's content."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
