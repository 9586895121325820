"""Orbax checkpoints of the TrainState plus a JSON of loop bookkeeping; atomic by design.

Orbax writes each step into a temporary folder and renames it when complete, so a process
killed mid-save leaves the previous checkpoint intact and no half-written one is restored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


def _saved_tree(state) -> dict[str, Any]:
    """The parts of a TrainState that a checkpoint holds (apply_fn and tx are code)."""
    return {
        "params": state.params,
        "opt_state": state.opt_state,
        "step": state.step,
        "batch_stats": state.batch_stats if state.batch_stats is not None else {},
        "ema": state.ema if getattr(state, "ema", None) is not None else {},
    }


class Checkpointer:
    """Saves and restores {state, meta} under `<workdir>/checkpoints/<step>/`."""

    def __init__(self, directory: Path, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        return self._manager.latest_step()

    def steps(self) -> list[int]:
        """Steps of every complete checkpoint, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, meta: dict[str, Any]) -> None:
        """Write state and meta for `step` (blocking until it is on disk)."""
        pytree = _saved_tree(state)
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(pytree), meta=ocp.args.JsonSave(meta)
            ),
        )
        self._manager.wait_until_finished()

    def restore(self, state, step: int | None = None):
        """(state, meta) restored into the structure of `state` from `step` (default newest)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint under {self.directory}")
        target = _saved_tree(state)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        tree = restored["state"]
        state = state.replace(
            params=tree["params"],
            opt_state=tree["opt_state"],
            step=tree["step"],
            batch_stats=tree["batch_stats"] if state.batch_stats is not None else None,
            ema=tree["ema"] if state.ema is not None else None,
        )
        return state, dict(restored["meta"])

    def set_aside(self, step: int) -> Path:
        """Rename an unreadable checkpoint out of the way (kept, never deleted); its new path."""
        path = self.directory / str(step)
        kept = path.with_name(f"{step}.unreadable")
        os.replace(path, kept)
        self._manager.reload()  # forget the step Orbax listed when it opened the folder
        return kept

    def close(self) -> None:
        """Release Orbax's resources."""
        self._manager.close()
