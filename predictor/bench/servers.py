"""Setups (b), (c) and (d) as child processes on free loopback ports.

Every server loads the same GGUF with the same threads, context per sequence
and batch size; the two that batch (kzero, llama-server) get the same number of
parallel sequences. Each child's output goes to a log file, shown when it fails
to become ready.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

import httpx

import predictor
from predictor.bench.llama_server import llama_server_command
from predictor.bench.workload import Workload

# Served name for every server, so one request body fits all.
SERVED_NAME = "kzero-bench"
READY_POLL_S = 0.2
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One server child process: started at construction, stopped by ``stop``."""

    def __init__(
        self,
        name: str,
        command: list[str],
        port: int,
        ready_path: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.url = f"http://127.0.0.1:{port}"
        self._ready_url = f"{self.url}{ready_path}"
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the process
            prefix=f"kzero-bench-{name}-", suffix=".log", delete=False
        )
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env={**server_env(), **(env or {})}
        )

    def log_tail(self, chars: int = 3000) -> str:
        return Path(self._log.name).read_text(errors="replace")[-chars:]

    def wait_ready(self, deadline: float, poll_s: float = READY_POLL_S) -> None:
        """Poll the readiness URL until 200; fail early if the process dies."""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self._ready_url, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(poll_s)
        raise TimeoutError(f"{self.name} not ready at {self._ready_url}:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within the timeout."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


def server_env() -> dict[str, str]:
    """This process's environment without kzero's settings (``KZERO_*``).

    The bench's command line is the whole configuration of the server it
    measures: a ``KZERO_API_KEY`` left in the shell would turn every request
    into a 401, a ``KZERO_MAX_RUNNING_REQUESTS`` would change the batch.
    """
    return {name: value for name, value in os.environ.items() if not name.startswith("KZERO_")}


def kzero_command(workload: Workload, port: int) -> list[str]:
    """``kzero serve`` (``python -m predictor`` is the same entry point); ``--n_ctx``
    is per sequence, as llama-server's ``-c`` divided by ``--parallel``."""
    return [
        sys.executable, "-m", "predictor",
        "--model", str(workload.model_path),
        "--model_name", SERVED_NAME,
        "--http_port", str(port),
        "--n_threads", str(workload.n_threads),
        "--n_ctx", str(workload.n_ctx),
        "--n_batch", str(workload.n_batch),
        "--max_running_requests", str(workload.n_parallel),
    ]  # fmt: skip


def start_kzero(workload: Workload) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        "kzero", kzero_command(workload, port), port, f"/v1/models/{SERVED_NAME}", predictor_env()
    )


def predictor_env() -> dict[str, str]:
    """Serve the very predictor package this bench was imported from, even from a
    source checkout that is not pip-installed."""
    source_root = str(Path(predictor.__file__).resolve().parent.parent)
    return {
        "PYTHONPATH": os.pathsep.join(filter(None, [source_root, os.environ.get("PYTHONPATH")]))
    }


def start_llama_cpp_server(workload: Workload) -> ServerProcess:
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
    return ServerProcess("llama_cpp.server", command, port, "/v1/models")


def start_llama_server(binary: Path, workload: Workload) -> ServerProcess:
    """llama.cpp's C++ server; ``/health`` answers 200 once the model is loaded."""
    port = free_port()
    command = llama_server_command(binary, workload, port, SERVED_NAME)
    return ServerProcess("llama-server", command, port, "/health")


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit, so the ``finally`` that stops the server children runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def http_server_on_loopback(handler: Callable[..., BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded stdlib HTTP server on a free loopback port; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
