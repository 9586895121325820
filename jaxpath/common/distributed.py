"""Several JAX processes training one model: `jax.distributed.initialize` and a local launcher.

Every process runs the same program: it builds the same global batch, keeps its own rows of
it (`shared_data.batches.worker_slice` by process index, in common/parallel.py) and joins
the collectives of a mesh that spans every process's devices. On a GPU cluster the same
code runs unchanged, one process per host (or per GPU), started by the cluster's launcher:

    jax.distributed.initialize("10.0.0.1:1234", num_processes=4, process_id=RANK)

Here the processes share this machine and talk over loopback; XLA:CPU's cross-process
collectives need an implementation chosen explicitly, gloo (`initialize` sets it).
The coordinates come from the environment when a launcher sets them (`launch_local` and
`roadmap run --processes N` do): $ROADMAP_JAX_COORDINATOR, $ROADMAP_JAX_NUM_PROCESSES and
$ROADMAP_JAX_PROCESS_ID.

Run folders: process 0 writes the run's logs and summary in the run folder; process k > 0
writes its own (identical but for timings) in `<run>/process-k/`, and all of them save
and restore the one set of Orbax checkpoints in `<run>/checkpoints/`, so a resumed run
continues exactly. No torchpath twin: torch.distributed's launcher is torchrun.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

# Read by loop.fit (common/parallel.py): its default form and device count.
FORM_ENV = "ROADMAP_JAX_PARALLEL"
DEVICES_ENV = "ROADMAP_JAX_DEVICES"
COORDINATOR_ENV = "ROADMAP_JAX_COORDINATOR"
NUM_PROCESSES_ENV = "ROADMAP_JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "ROADMAP_JAX_PROCESS_ID"


def initialize(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Join the job: call before JAX computes anything (it fixes the backend's devices)."""
    import jax

    # Only read by the CPU backend: without it, XLA:CPU has no cross-process collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def initialize_from_env(environ=os.environ) -> bool:
    """`initialize` from $ROADMAP_JAX_* when a launcher set them; whether it did."""
    if COORDINATOR_ENV not in environ:
        return False
    try:
        num_processes = int(environ[NUM_PROCESSES_ENV])
        process_id = int(environ[PROCESS_ID_ENV])
    except (KeyError, ValueError) as err:
        raise ValueError(
            f"${COORDINATOR_ENV} is set, so ${NUM_PROCESSES_ENV} and ${PROCESS_ID_ENV} must be "
            f"integers: {err}"
        ) from None
    initialize(environ[COORDINATOR_ENV], num_processes, process_id)
    return True


def barrier(name: str, timeout_s: float = 900.0) -> None:
    """Wait until every process of the job arrives here (no-op in a single process).

    A barrier of the coordination service, not a collective: XLA:CPU's gloo collectives give
    up after 30 s when processes reach their first collective that far apart (building the
    communicator ignores --xla_cpu_collective_timeout_seconds), which loading and
    initialising at different speeds on a busy machine can exceed.
    """
    from jax._src import distributed as jax_distributed  # no public barrier but collectives

    client = jax_distributed.global_state.client
    if client is not None:
        client.wait_at_barrier(name, int(timeout_s * 1000))


def process_workdir(workdir: str | Path) -> Path:
    """Where this process logs: the run folder for process 0, `<run>/process-k` otherwise."""
    import jax

    workdir = Path(workdir)
    index = jax.process_index()
    return workdir if index == 0 else workdir / f"process-{index}"


def free_port() -> int:
    """A TCP port free on loopback now (for the coordinator)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# XLA:CPU aborts the process when a device waits 40 s for its peers in a collective; on a
# busy shared machine a peer can be that late. A flag the user set is kept.
COLLECTIVE_WAIT_FLAGS = ("--xla_cpu_collective_call_terminate_timeout_seconds=900",)


def with_host_devices(xla_flags: str | None, count: int) -> str:
    """`xla_flags` asking XLA:CPU for `count` host devices (flags already there stay put)."""
    flags, name = (xla_flags or "").split(), "--xla_force_host_platform_device_count"
    wanted = f"{name}={count}"
    if wanted not in flags:
        flags = [f for f in flags if not f.startswith(name)] + [wanted]
    names = {f.split("=", 1)[0] for f in flags}
    flags += [f for f in COLLECTIVE_WAIT_FLAGS if f.split("=", 1)[0] not in names]
    return " ".join(flags)


def process_environ(
    process_id: int, num_processes: int, devices_per_process: int, port: int, environ=os.environ
) -> dict[str, str]:
    """The environment of one local process: coordinates and its number of CPU devices."""
    flags = with_host_devices(environ.get("XLA_FLAGS"), devices_per_process)
    if "--xla_cpu_collective_timeout_seconds" not in flags:  # one process may checkpoint longer
        flags += " --xla_cpu_collective_timeout_seconds=900"
    return {
        **environ,
        "XLA_FLAGS": flags,
        "JAX_PLATFORMS": environ.get("JAX_PLATFORMS", "cpu"),
        COORDINATOR_ENV: f"127.0.0.1:{port}",
        NUM_PROCESSES_ENV: str(num_processes),
        PROCESS_ID_ENV: str(process_id),
    }


def launch_local(
    argv: Sequence[str],
    num_processes: int,
    devices_per_process: int = 1,
    *,
    timeout: float | None = None,
    capture: bool = False,
) -> list[subprocess.CompletedProcess]:
    """Run `python argv` as `num_processes` processes of one job on this machine.

    Each gets its coordinates and `devices_per_process` CPU devices in its environment; the
    program calls `initialize_from_env()` before touching JAX. When one process fails the
    others are stopped (they would wait for it in a collective forever).
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="roadmap-launch-") as logs:
        files = [
            (open(Path(logs) / f"{i}.out", "w+"), open(Path(logs) / f"{i}.err", "w+"))
            if capture
            else (None, None)
            for i in range(num_processes)
        ]
        procs = [
            subprocess.Popen(
                [sys.executable, *argv],
                env=process_environ(i, num_processes, devices_per_process, port),
                stdout=out,
                stderr=err,
                text=True,
            )
            for i, (out, err) in enumerate(files)
        ]
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while any(p.poll() is None for p in procs):
                failed = any(p.poll() not in (None, 0) for p in procs)
                if failed or (deadline is not None and time.monotonic() > deadline):
                    break
                time.sleep(0.1)
        finally:
            for proc in procs:  # the rest would wait for a failed peer in a collective
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
        results = []
        for proc, (out, err) in zip(procs, files, strict=True):
            texts = [None, None]
            for i, handle in enumerate((out, err)):
                if handle is not None:
                    handle.seek(0)
                    texts[i] = handle.read()
                    handle.close()
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, *texts))
    return results
