"""Fresh-process check of an export: `python -m comparisons.export.verify MANIFEST CASES.npz`.

CASES.npz holds, per batch size n, the model inputs `<n>/<name>` and the live model's outputs
`<n>/expected` (written by the exporting process, read here without pickle); for a model
made from text also `text/texts`, raw strings that this process encodes itself with the
tokenizer the export holds, and `text/expected`. This process
imports nothing of the project's models: it loads the artifact with `load_artifact` alone,
as a server would, and prints one JSON line: per batch size the output shape and the max
absolute difference, or the error that stopped it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np


def compare(manifest_path: Path, cases_path: Path) -> dict[str, Any]:
    """Run the artifact on every case; shapes and max abs differences against the expected."""
    from comparisons.export.loaders import load_artifact, load_text_encoder

    predict = load_artifact(manifest_path)
    with np.load(cases_path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    results = {}
    for case in sorted({key.split("/")[0] for key in arrays}, key=lambda c: (not c.isdigit(), c)):
        prefix = f"{case}/"
        batch = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        expected = batch.pop("expected")
        if case == "text":  # raw texts: encoded here, with the tokenizer the export holds
            batch = load_text_encoder(manifest_path)([str(t) for t in batch["texts"]])
        got = predict(batch)
        entry: dict[str, Any] = {"shape": list(got.shape), "dtype": str(got.dtype)}
        if got.shape != expected.shape:
            entry["error"] = f"output shape {got.shape}, live model gave {expected.shape}"
        else:
            diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
            # NaN anywhere is a mismatch, not a silently ignored max.
            entry["max_abs_diff"] = float(np.max(diff)) if np.all(np.isfinite(diff)) else "nan"
        results[case] = entry
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the comparison as one JSON line; exit 1 if the artifact fails."""
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    manifest_path, cases_path = Path(argv[0]), Path(argv[1])
    try:
        results = compare(manifest_path, cases_path)
    except Exception as err:  # noqa: BLE001 - any failure to load or run is the result
        first = (str(err).strip().splitlines() or [""])[0][:300]
        print(json.dumps({"error": f"{type(err).__name__}: {first}"}))
        return 1
    print(json.dumps({"batches": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
