"""Setups (b), (c) and (d) as child processes on free loopback ports.

Every server loads the same GGUF with the same threads, context per sequence
and batch size; the two that batch (kzero, llama-server) get the same number of
parallel sequences. Each child runs through the shared harness
(bench/harness/process.py): the bench's command line is its whole
configuration, and its log is shown when it fails to become ready.
"""

from __future__ import annotations

import sys
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
    return [
        "--model", str(workload.model_path),
        "--model_name", SERVED_NAME,
        "--n_threads", str(workload.n_threads),
        "--n_ctx", str(workload.n_ctx),
        "--n_batch", str(workload.n_batch),
        "--max_running_requests", str(workload.n_parallel),
    ]  # fmt: skip


def start_kzero(workload: Workload) -> StartedServer:
    process = PredictorProcess(kzero_args(workload), name="kzero")
    return StartedServer(process, f"/v1/models/{SERVED_NAME}")


def start_llama_cpp_server(workload: Workload) -> StartedServer:
    """``python -m llama_cpp.server`` with its defaults, interrupt_requests included."""
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(workload.model_path),
        "--model_alias", SERVED_NAME,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_threads", str(workload.n_threads),
        "--n_threads_batch", str(workload.n_threads),
        "--n_ctx", str(workload.n_ctx),
        "--n_batch", str(workload.n_batch),
    ]  # fmt: skip
    return StartedServer(ServerProcess("llama_cpp.server", command, port), "/v1/models")


def start_llama_server(binary: Path, workload: Workload) -> StartedServer:
    """llama.cpp's C++ server; ``/health`` answers 200 once the model is loaded."""
    port = free_port()
    command = llama_server_command(binary, workload, port, SERVED_NAME)
    return StartedServer(ServerProcess("llama-server", command, port), "/health")
