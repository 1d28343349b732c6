"""Setups (b), (c) and (d) as child processes on free loopback ports.

Every server loads the same GGUF with the same threads, context per sequence
and batch size; the two that batch (kzero, llama-server) get the same number of
parallel sequences. Each child runs through the shared harness
(bench/harness/process.py): the bench's command line is its whole
configuration, and its log is shown when it fails to become ready.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.harness.process import PredictorProcess, ServerProcess, free_port
from bench.llama_server import llama_server_command
from bench.workload import Workload

# Served name for every server, so one request body fits all.
SERVED_NAME = "kzero-bench"


@dataclass
class StartedServer:
    """A server child and the path that answers 200 once its model is loaded."""

    process: ServerProcess
    ready_path: str

    def wait_ready(self, timeout_s: float) -> None:
        self.process.wait_for_200(self.ready_path, timeout_s, poll_s=0.2)


def kzero_args(workload: Workload) -> list[str]:
    """``kzero serve``'s flags; ``--n_ctx`` is per sequence, as llama-server's ``-c``
    divided by ``--parallel``."""
    return kzero_variant_args(workload, workload.n_parallel)


def kzero_variant_args(workload: Workload, max_running_requests: int | None) -> list[str]:
    """``kzero_args`` with another ``--max_running_requests``; None leaves it to kzero
    (its default: four sequences per CPU, up to 8). The workload's extra kzero flags
    come last."""
    args = [
        "--model", str(workload.model_path),
        "--model_name", SERVED_NAME,
        "--n_threads", str(workload.n_threads),
        "--n_ctx", str(workload.n_ctx),
        "--n_batch", str(workload.n_batch),
    ]  # fmt: skip
    if max_running_requests is not None:
        args += ["--max_running_requests", str(max_running_requests)]
    return [*args, *workload.kzero_extra_args]


def launch_kzero(args: Sequence[str], name: str = "kzero") -> StartedServer:
    """``kzero serve`` with exactly ``args`` (plus the port)."""
    process = PredictorProcess(args, name=name)
    return StartedServer(process, f"/v1/models/{SERVED_NAME}")


def start_kzero(workload: Workload) -> StartedServer:
    return launch_kzero(kzero_args(workload))


def launch_llama_cpp_server(
    model: Path, n_threads: int, extra: Sequence[str] = ()
) -> StartedServer:
    """``python -m llama_cpp.server`` with its defaults but for the model, the threads
    (its own default is half the CPUs) and ``extra``; interrupt_requests stays on."""
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model),
        "--model_alias", SERVED_NAME,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_threads", str(n_threads),
        "--n_threads_batch", str(n_threads),
        *extra,
    ]  # fmt: skip
    return StartedServer(ServerProcess("llama_cpp.server", command, port), "/v1/models")


def start_llama_cpp_server(workload: Workload) -> StartedServer:
    """The same context and batch size as the other setups."""
    extra = ["--n_ctx", str(workload.n_ctx), "--n_batch", str(workload.n_batch)]
    return launch_llama_cpp_server(workload.model_path, workload.n_threads, extra)


def launch_llama_server(command: Callable[[int], list[str]]) -> StartedServer:
    """llama.cpp's C++ server, ``command(port)``; ``/health`` answers 200 once the model
    is loaded."""
    port = free_port()
    return StartedServer(ServerProcess("llama-server", command(port), port), "/health")


def start_llama_server(binary: Path, workload: Workload) -> StartedServer:
    return launch_llama_server(
        lambda port: llama_server_command(binary, workload, port, SERVED_NAME)
    )
