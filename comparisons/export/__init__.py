"""Export a finished run (torch.export, ONNX, TorchScript, jax.export), verified by reloading.

core.py exports and writes `<run>/export/<format>/manifest.json`; torch_export.py and
jax_export.py hold each framework's formats; loaders.py loads an artifact in this process
(the serving side's entry point); verify.py is the fresh process that checks an export.
See docs/EXPORT.md.
"""

from comparisons.export.core import (
    FORMATS,
    VerificationError,
    add_arguments,
    available_formats,
    export_run,
    run,
    verify_export,
)
from comparisons.export.loaders import load_artifact, load_text_encoder, read_manifest

# The CLI adds the project and --workdir, not the training flags: the config is the run's.
TAKES_CONFIG = False

__all__ = [
    "TAKES_CONFIG",
    "FORMATS",
    "VerificationError",
    "add_arguments",
    "available_formats",
    "export_run",
    "load_artifact",
    "load_text_encoder",
    "read_manifest",
    "run",
    "verify_export",
]
