"""DDP over gloo, launched by torchrun, equals one process on the same global batch.

Each rank trains on its rows of every global batch (shared_data.batches.worker_slice), the
gradients are averaged over the ranks and BatchNorm's statistics are the global batch's
(torchpath/common/distributed.py): after a few steps the parameters match a one-process run
within 1e-5 in fp32. Multi-process runs are launched as `python -m torch.distributed.run`
on this file (the `__main__` block below trains one project) in subprocesses.

The steps use SGD at a modest rate: DDP sums the gradients in another order than one
process does, and Adam's g / sqrt(v) turns such rounding in near-zero gradients into
steps of order lr (1e-5 apart after 3 steps at lr 1e-3 on the MNIST CNN); the speedrun's
lr 1.5 amplifies it likewise, as does any other equivalent BatchNorm formulation.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from comparisons.bench import scaling
from comparisons.cli import build_parser, main
from shared_data.configs.base import override

# Smoke variants at rates where fp32 rounding stays at rounding size (module docstring).
OVERRIDES = {
    "mnist": ("optimizer=sgd", "lr=0.05", "dropout=false"),  # one process draws one mask
    "cifar10": ("lr=0.005", "lookahead_every=2"),  # BatchNorm, label smoothing, Lookahead
}
STEPS = 3


def train(project: str, workdir: Path, nproc: int, *sets: str, resume: bool = False) -> None:
    """Train the smoke variant of `project` in `nproc` processes (1: in this process)."""
    sets = (*OVERRIDES[project], f"max_steps={STEPS}", *sets)
    if nproc == 1:
        _train_here(project, workdir, resume, sets)
        return
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", __file__, project, str(workdir), str(int(resume)), *sets,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _train_here(project: str, workdir, resume: bool, sets) -> dict:
    module = importlib.import_module(f"torchpath.{project}.train")
    configs = importlib.import_module(f"shared_data.configs.{project}")
    config = override(configs.get_config("smoke"), list(sets))
    return module.train_and_evaluate(config, workdir, resume=resume, progress=False)


def checkpoint(workdir: Path, step: int) -> dict:
    """The checkpoint rank 0 wrote at `step`."""
    return torch.load(workdir / "checkpoints" / f"ckpt_{step}.pt", weights_only=True)


def assert_same_training(a: Path, b: Path, step: int = STEPS, atol: float = 1e-5) -> None:
    """Same parameters, BatchNorm statistics and Lookahead average after `step` steps."""
    first, second = checkpoint(a, step), checkpoint(b, step)
    for part in ("model", "ema"):
        if first[part] is None:
            assert second[part] is None
            continue
        assert first[part].keys() == second[part].keys()  # no "module." prefix under DDP
        for key, value in first[part].items():
            torch.testing.assert_close(second[part][key], value, atol=atol, rtol=0, msg=key)
    history = [checkpoint(w, step)["meta"]["history"][-1] for w in (a, b)]
    assert history[0].keys() == history[1].keys()
    for key in history[0]:
        if key.startswith(("train_", "test_")):  # train sums are summed over the ranks
            assert history[1][key] == pytest.approx(history[0][key], abs=1e-5), key


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """Each project's one-process run (trained once, on first use)."""
    runs = {}

    def run(project: str) -> Path:
        if project not in runs:
            runs[project] = tmp_path_factory.mktemp(f"{project}-1")
            train(project, runs[project], 1)
        return runs[project]

    return run


# Four processes are the same code as two, at twice the cost: `slow` (pytest -m slow).
@pytest.mark.parametrize("nproc", [2, pytest.param(4, marks=pytest.mark.slow)])
@pytest.mark.parametrize("project", sorted(OVERRIDES))
def test_ddp_equals_one_process(project, nproc, one_process, tmp_path):
    train(project, tmp_path, nproc)
    assert_same_training(one_process(project), tmp_path)
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len([r for r in rows if '"test"' in r]) == 1  # rank 0 alone writes the log


def test_resume_mid_run_continues_exactly(one_process, tmp_path):
    # Stopped after step 1 (mid-epoch, before the Lookahead average's first update), then
    # resumed by two fresh processes that read rank 0's checkpoint.
    train("cifar10", tmp_path, 2, "max_steps=1")
    assert (tmp_path / "checkpoints" / "ckpt_1.pt").is_file()
    train("cifar10", tmp_path, 2, resume=True)
    assert_same_training(one_process("cifar10"), tmp_path)


def test_batch_that_does_not_split_is_refused(tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3",
        __file__, "mnist", str(tmp_path), "0", *OVERRIDES["mnist"], "max_steps=1",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "field 'batch_size'" in done.stdout + done.stderr
    assert "multiple of 3" in done.stdout + done.stderr


def test_roadmap_run_nproc_launches_torchrun(tmp_path):
    argv = ["run", "mnist", "--variant", "smoke", "--framework", "torch", "--no-progress"]
    argv += ["--workdir", str(tmp_path), "--run-id", "ddp", "--set", "max_steps=1"]
    assert main([*argv, "--nproc", "2"]) == 0
    summary = json.loads((tmp_path / "mnist" / "torch" / "ddp" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 1
    assert main([*argv, "--nproc", "2", "--framework", "jax"]) == 2  # JAX takes --devices


def test_scaling_bench_runs_each_framework_on_its_workers(tmp_path):
    args = build_parser().parse_args(
        ["bench", "mnist", "--scaling", "--variant", "smoke", "--workdir", str(tmp_path)]
    )
    assert args.scaling and args.scaling_workers == [1, 2]
    torch_two = scaling.worker_command(args, "torch", 2, "w2")
    assert torch_two[-2:] == ["--nproc", "2"] and "max_steps=100" in torch_two
    assert scaling.worker_command(args, "jax", 2, "w2")[-2:] == ["--devices", "2"]
    assert "--nproc" not in scaling.worker_command(args, "torch", 1, "w1")
    rows = [
        {"framework": "torch", "workers": 1, "threads_per_worker": 1, "examples_per_s": 100.0,
         "examples_per_s_all": [90.0, 100.0, 120.0], "speedup": 1.0, "efficiency": 1.0},
        {"framework": "torch", "workers": 2, "error": "boom"},
    ]  # fmt: skip
    table = scaling.to_markdown(rows)
    assert "| torch | 1 | 1 | 100 | 90, 100, 120 | 1.00x | 1.00 |" in table
    assert "error: boom" in table


if __name__ == "__main__":  # one rank of a torchrun launch: PROJECT WORKDIR RESUME KEY=VALUE...
    _project, _workdir, _resume, *_sets = sys.argv[1:]
    _train_here(_project, Path(_workdir), _resume == "1", _sets)
