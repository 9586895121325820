"""`roadmap export`: every format round-trips in a fresh process; manifests and checksums hold."""

from __future__ import annotations

import datetime
import hashlib
import importlib
import json
import shutil

import numpy as np
import pytest

from comparisons.cli import main
from comparisons.export import (
    FORMATS,
    VerificationError,
    available_formats,
    export_run,
    load_artifact,
    verify_export,
)
from comparisons.export.core import TOLERANCE, sha256_arrays
from comparisons.registry import get_project, list_projects
from comparisons.runfolders import load_trained
from shared_data.configs.base import ConfigError, override

PRIMARY = {"torch": "torch.export", "jax": "jax.export"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A smoke run per (project, framework), trained on first use; root and a getter."""
    root = tmp_path_factory.mktemp("runs")
    done = {}

    def get(project: str, framework: str):
        if (project, framework) not in done:
            spec = get_project(project)
            config = override(spec.config("smoke"), {"max_steps": 3})
            path = root / project / framework / "r1"
            spec.module(framework).train_and_evaluate(config, path, progress=False)
            done[project, framework] = path
        return done[project, framework]

    get.root = root
    return get


@pytest.fixture(scope="module")
def exported(runs):
    """Manifest path of one export of the cached runs, made on first use."""
    done = {}

    def get(project: str, framework: str, fmt: str):
        if (project, framework, fmt) not in done:
            done[project, framework, fmt] = export_run(
                project, framework, fmt, runs(project, framework)
            )
        return done[project, framework, fmt]

    return get


def _copy_run(runs, tmp_path, framework: str):
    path = tmp_path / "mnist" / framework / "copy"
    shutil.copytree(runs("mnist", framework), path)
    return path


MNIST_FORMATS = [(fw, fmt) for fw in sorted(FORMATS) for fmt in available_formats(fw)]


@pytest.mark.parametrize(("framework", "fmt"), MNIST_FORMATS)
def test_every_format_round_trips_with_a_complete_manifest(framework, fmt, runs, exported):
    manifest_path = exported("mnist", framework, fmt)
    manifest = json.loads(manifest_path.read_text())
    run_path = runs("mnist", framework)
    assert manifest_path == run_path / "export" / fmt / "manifest.json"
    assert (manifest["project"], manifest["framework"], manifest["format"]) == (
        "mnist",
        framework,
        fmt,
    )
    assert manifest["run_id"] == "r1" and manifest["step"] == 3
    assert manifest["inputs"] == [{"name": "image", "shape": [None, 28, 28, 1], "dtype": "float32"}]
    assert manifest["output"] == {"shape": [None, 10], "dtype": "float32"}
    artifact = manifest_path.parent / manifest["artifact"]["file"]
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == manifest["artifact"]["sha256"]
    # The weights' checksum is the restored state's, and the checkpoint file(s) they came from.
    project = get_project("mnist")
    _, state, _ = load_trained(project, framework, run_path)
    backend = importlib.import_module(f"comparisons.export.{framework}_export")
    assert manifest["weights"]["sha256"] == sha256_arrays(backend.weight_arrays(state))
    for name, digest in manifest["weights"]["checkpoint_files"].items():
        assert hashlib.sha256((run_path / name).read_bytes()).hexdigest() == digest
    assert manifest["versions"][framework] != "not installed"
    assert datetime.datetime.fromisoformat(manifest["created"]).tzinfo is not None
    verification = manifest["verification"]
    assert verification["passed"] and verification["batch_sizes"] == [1, 7]
    assert verification["process"].startswith("fresh")
    for size in ("1", "7"):
        assert verification["batches"][size]["shape"] == [int(size), 10]
        assert verification["batches"][size]["max_abs_diff"] <= TOLERANCE
    # In this process too: the serving side's loader gives the live model's outputs.
    batch = {"image": project.example_batch(5, seed=3)["image"]}
    expected = backend.live_predict(project, state, batch)
    np.testing.assert_allclose(load_artifact(manifest_path)(batch), expected, atol=TOLERANCE)


@pytest.mark.parametrize("framework", sorted(PRIMARY))
@pytest.mark.parametrize("project", [p.name for p in list_projects()])
def test_every_project_exports_in_both_frameworks(project, framework, exported):
    manifest = json.loads(exported(project, framework, PRIMARY[framework]).read_text())
    spec = get_project(project)
    assert [i["name"] for i in manifest["inputs"]] == list(spec.model_inputs)
    assert all(i["shape"][0] is None for i in manifest["inputs"])
    assert manifest["verification"]["passed"], manifest["verification"]["problems"]
    specs = spec.input_specs(spec.config("smoke"))
    made_from_text = [n for n in spec.model_inputs if specs[n].tokenizer]
    assert [t["field"] for t in manifest["text_inputs"]] == made_from_text
    if made_from_text:  # the fresh process encoded raw text with the exported tokenizer
        assert manifest["verification"]["batches"]["text"]["max_abs_diff"] <= TOLERANCE
    if framework == "jax":
        details = manifest["details"]
        assert details["calling_convention_version"] >= 9
        first = spec.input_specs(spec.config("smoke"))[spec.model_inputs[0]]
        assert details["in_avals"][0].startswith(f"{first.dtype}[b")  # int32 tokens, too
        # Scores, or ids where predict decodes (seq2seq's translations).
        assert details["out_avals"][0].split("[")[0] in ("float32", "int32")
        assert details["out_avals"][0].split("[")[1].startswith("b")


def test_torchscript_records_its_deprecation(exported):
    if "torchscript" not in available_formats("torch"):
        pytest.skip("this torch has no torch.jit.trace")
    manifest = json.loads(exported("mnist", "torch", "torchscript").read_text())
    assert any("deprecated" in w for w in manifest["details"]["warnings"])


def test_tampered_weights_are_caught(runs, tmp_path):
    import torch

    path = _copy_run(runs, tmp_path, "torch")  # ONNX: the fastest fresh process
    manifest_path = export_run("mnist", "torch", "onnx", path)
    assert verify_export(manifest_path)["passed"]
    (checkpoint,) = (path / "checkpoints").glob("ckpt_*.pt")
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    name = next(k for k in payload["model"] if k.endswith("weight"))
    payload["model"][name] += 0.5
    torch.save(payload, checkpoint)
    result = verify_export(manifest_path)
    assert not result["passed"]
    assert any("weights" in p and "sha256" in p for p in result["problems"])
    assert any("max abs diff" in p for p in result["problems"])
    code = main(
        ["export", "mnist", "--framework", "torch", "--format", "onnx"]
        + ["--workdir", str(tmp_path), "--run", "copy", "--check"]
    )
    assert code == 1


def test_a_corrupt_artifact_is_caught(runs, tmp_path, capsys):
    path = _copy_run(runs, tmp_path, "jax")
    manifest_path = export_run("mnist", "jax", "jax.export", path)
    artifact = manifest_path.parent / "model.jax_export"
    artifact.write_bytes(artifact.read_bytes()[:1000])
    result = verify_export(manifest_path)
    assert not result["passed"]
    assert any("artifact" in p and "sha256" in p for p in result["problems"])
    assert result["error"] and "\n" not in result["error"]  # the fresh process could not load it


def test_an_output_mismatch_fails_the_export(runs, tmp_path, monkeypatch):
    path = _copy_run(runs, tmp_path, "jax")
    backend = importlib.import_module("comparisons.export.jax_export")
    live = backend.live_predict
    monkeypatch.setattr(backend, "live_predict", lambda *a: live(*a) + 1e-3)
    with pytest.raises(VerificationError, match=r"max abs diff .* > 0\.0001") as err:
        export_run("mnist", "jax", "jax.export", path)
    assert "\n" not in str(err.value)
    manifest = json.loads((path / "export" / "jax.export" / "manifest.json").read_text())
    assert manifest["verification"]["passed"] is False


def test_errors_are_one_line_config_errors(runs, tmp_path, monkeypatch, capsys):
    path = runs("mnist", "torch")
    with pytest.raises(ConfigError, match="not one of torch's"):
        export_run("mnist", "torch", "jax.export", path)
    with pytest.raises(ConfigError, match="orbax-checkpoint"):
        export_run("mnist", "jax", "onnx", runs("mnist", "jax"))
    with pytest.raises(ConfigError, match="no finished run"):
        export_run("mnist", "torch", "onnx", tmp_path)
    import torch

    monkeypatch.delattr(torch.jit, "trace")
    with pytest.raises(ConfigError, match="unavailable"):
        export_run("mnist", "torch", "torchscript", path)
    code = main(
        ["export", "mnist", "--framework", "jax", "--format", "jax.export"]
        + ["--workdir", str(tmp_path)]
    )
    assert code == 2 and "no finished run" in capsys.readouterr().err


def test_cli_checks_an_export(runs, exported, capsys):
    exported("mnist", "jax", "jax.export")
    code = main(
        ["export", "mnist", "--framework", "jax", "--format", "jax.export"]
        + ["--workdir", str(runs.root), "--check"]
    )
    assert code == 0 and "verified in a fresh process" in capsys.readouterr().out
