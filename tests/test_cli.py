"""The `roadmap` command line: listing, error messages, and a compare run end to end."""

from __future__ import annotations

import json

from comparisons.cli import main


def test_list_names_projects_and_datasets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mnist" in out and "digits" in out and "synthetic" in out


def test_missing_data_dir_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code = main(
        [
            "run",
            "mnist",
            "--framework",
            "jax",
            "--dataset",
            "mnist",
            "--data-dir",
            str(missing),
            "--workdir",
            str(tmp_path / "runs"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert str(missing) in err


def test_unknown_config_field_is_a_clear_error(tmp_path, capsys):
    code = main(
        [
            "run",
            "mnist",
            "--framework",
            "torch",
            "--variant",
            "smoke",
            "--set",
            "epoch=3",
            "--workdir",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "unknown config field 'epoch'" in capsys.readouterr().err


def test_resume_without_a_run_says_so(tmp_path, capsys):
    code = main(
        [
            "run",
            "mnist",
            "--framework",
            "jax",
            "--variant",
            "smoke",
            "--resume",
            "--workdir",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "nothing to resume" in capsys.readouterr().out


def test_compare_prints_and_writes_the_side_by_side_table(tmp_path, capsys):
    code = main(
        [
            "compare",
            "mnist",
            "--variant",
            "smoke",
            "--model",
            "mlp",
            "--epochs",
            "1",
            "--workdir",
            str(tmp_path),
            "--run-id",
            "t",
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "| epoch 1 test accuracy |" in out and "JAX (jax.jit)" in out
    result = json.loads((tmp_path / "mnist" / "compare" / "t" / "compare.json").read_text())
    assert result["initial_outputs_max_abs_diff"] <= 1e-5
    assert set(result["runs"]) == {"jax", "torch"}
    metrics = {row["metric"] for row in result["rows"]}
    assert {"train examples/s (compile excluded)", "parameters"} <= metrics
    for framework in ("jax", "torch"):
        assert (tmp_path / "mnist" / framework / "t" / "summary.json").exists()
    assert (tmp_path / "mnist" / "compare" / "t" / "compare.md").read_text().count("|") > 20


def test_cross_field_and_list_mistakes_are_one_line_errors(tmp_path, capsys):
    cases = [
        (["run", "mnist", "--framework", "jax", "--set", "conv_widths=16"], "'conv_widths'"),
        (["run", "mnist", "--framework", "jax", "--set", "seed=99999999999999999999"], "'seed'"),
        (
            ["run", "mnist", "--framework", "jax", "--schedule", "cosine"]
            + ["--set", "warmup_epochs=5"],
            "'warmup_epochs'",
        ),
        (["run", "regression", "--framework", "torch", "--set", "augment=true"], "'augment'"),
        (["compare", "mnist", "--frameworks", "jax,jax"], "--frameworks"),
        (["compare", "mnist", "--frameworks", ","], "--frameworks"),
    ]
    for argv, field in cases:
        code = main([*argv, "--variant", "smoke", "--workdir", str(tmp_path), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and field in err, (argv, err)
    assert not list(tmp_path.rglob("*")), "nothing may be built before the config is checked"


def test_precision_reaches_every_command_that_builds_a_config():
    from comparisons.cli import build_parser
    from comparisons.options import load_config

    parser = build_parser()
    for command in ("run", "compare", "ir", "bench"):
        extra = ["--framework", "jax"] if command == "run" else []
        args = parser.parse_args([command, "cifar10", *extra, "--precision", "bf16"])
        assert load_config(args).precision == "bf16", command
