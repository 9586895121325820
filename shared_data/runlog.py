"""Framework-neutral run bookkeeping: run folders, metrics.jsonl, TensorBoard events, timing.

Both training loops (jaxpath/common/loop.py and torchpath/common/loop.py) log through this one
module so that their outputs have exactly the same layout and can be compared line by line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename, so readers never see half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Atomically write pretty-printed JSON."""
    atomic_write_text(Path(path), json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file, ignoring a torn last line left by a killed process."""
    rows = []
    path = Path(path)
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


class _TensorBoard:
    """Scalar-only TensorBoard event writer built on the tensorboard package (no TF, no torch)."""

    def __init__(self, logdir: Path):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
        self._writer = EventFileWriter(str(logdir))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Write one event holding every scalar of `values` at `step`."""
        summary = self._summary_pb2.Summary(
            value=[
                self._summary_pb2.Summary.Value(tag=tag, simple_value=float(v))
                for tag, v in values.items()
            ]
        )
        self._writer.add_event(
            self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary)
        )

    def restart_at(self, step: int) -> None:
        """Tell TensorBoard to drop events after `step` (those a resumed run replays)."""
        # A SessionLog START makes TensorBoard purge orphaned events with larger steps,
        # the mechanism behind torch's SummaryWriter(purge_step=...).
        self._writer.add_event(
            self._event_pb2.Event(
                wall_time=time.time(),
                step=step,
                session_log=self._event_pb2.SessionLog(status=self._event_pb2.SessionLog.START),
            )
        )

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()


class RunLogger:
    """Appends metric rows to `metrics.jsonl` and mirrors them into TensorBoard events."""

    def __init__(self, workdir: Path, *, resume_step: int | None = None, tensorboard: bool = True):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.path = self.workdir / METRICS_FILE
        if resume_step is None:
            atomic_write_text(self.path, "")
        else:
            # Rows logged after the checkpoint we resume from are replayed; drop them.
            kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(self.path, "a", encoding="utf-8")
        self._tb = _TensorBoard(self.workdir / "tensorboard") if tensorboard else None
        if self._tb is not None and resume_step is not None:
            self._tb.restart_at(resume_step)

    def log(self, split: str, step: int, epoch: int, **values: float) -> dict[str, Any]:
        """Record one row of metrics for `split` ("train", "val", "test") at `step`."""
        row = {
            "split": split,
            "step": int(step),
            "epoch": int(epoch),
            **{k: float(v) for k, v in values.items()},
        }
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            self._tb.scalars(step, {f"{split}/{k}": v for k, v in values.items()})
        return row

    def close(self) -> None:
        """Close the metrics file and the event file."""
        self._file.close()
        if self._tb is not None:
            self._tb.close()


class StepTimer:
    """Separates compiling steps from the steady-state throughput.

    A step is compiling when its batch has a shape no earlier step had: jax.jit traces and
    compiles anew for it (length-bucketed text batches bring a few widths). The first such
    step is `first_step_s`; later ones add to `new_shape_s`. Torch's eager steps go through
    the same rule, so both frameworks' rates leave out the same steps.
    """

    def __init__(self) -> None:
        self.first_step_s: float | None = None
        self.new_shape_s = 0.0  # compiling steps after the first
        self.new_shape_steps = 0
        self.steady_s = 0.0
        self.steady_examples = 0

    def record(self, seconds: float, examples: int, first: bool) -> None:
        """Add one timed interval; `first` marks a step whose batch shape is new."""
        if first and self.first_step_s is None:
            self.first_step_s = seconds
        elif first:
            self.new_shape_s += seconds
            self.new_shape_steps += 1
        else:
            self.steady_s += seconds
            self.steady_examples += examples

    @property
    def examples_per_s(self) -> float | None:
        """Training examples per second, compiling steps excluded."""
        return self.steady_examples / self.steady_s if self.steady_s > 0 else None
