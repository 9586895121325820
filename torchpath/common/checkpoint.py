"""torch.save checkpoints of model, optimizer, scheduler and loop bookkeeping, written atomically.

Each checkpoint goes to a temporary file in the same folder and is renamed into place only
once complete (os.replace is atomic on POSIX), so a process killed mid-save leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


class Checkpointer:
    """Saves and restores {state, meta} as `<workdir>/checkpoints/ckpt_<step>.pt`."""

    def __init__(self, directory: Path, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_to_keep = max_to_keep

    def steps(self) -> list[int]:
        """Steps of every complete checkpoint, oldest first."""
        return sorted(
            int(m.group(1)) for p in self.directory.iterdir() if (m := _NAME.match(p.name))
        )

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, state, meta: dict[str, Any]) -> None:
        """Write state and meta for `step` and prune old checkpoints."""
        payload = {
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "step": state.step,
            "ema": getattr(state, "ema", None),
            "meta": meta,
        }
        path = self.directory / f"ckpt_{step}.pt"
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        for old in self.steps()[: -self.max_to_keep]:
            (self.directory / f"ckpt_{old}.pt").unlink(missing_ok=True)

    def restore(self, state, step: int | None = None):
        """(state, meta) restored in place from `step` (default newest)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint under {self.directory}")
        path = self.directory / f"ckpt_{step}.pt"
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - name the file, keep the cause
            raise RuntimeError(f"cannot read checkpoint {path}: {err}") from err
        state.model.load_state_dict(payload["model"])
        state.optimizer.load_state_dict(payload["optimizer"])
        state.scheduler.load_state_dict(payload["scheduler"])
        state.step = int(payload["step"])
        if getattr(state, "ema", None) is not None:
            state.ema = payload["ema"]
        return state, dict(payload["meta"])

    def set_aside(self, step: int) -> Path:
        """Rename an unreadable checkpoint out of the way (kept, never deleted); its new path."""
        path = self.directory / f"ckpt_{step}.pt"
        kept = path.with_name(path.name + ".unreadable")
        os.replace(path, kept)
        return kept

    def close(self) -> None:
        """Nothing to release; mirrors the Orbax checkpointer."""
