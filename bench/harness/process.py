"""A server as a child process on a free loopback port, with the environment we choose.

The environment is the caller's without kzero's settings (``KZERO_*``): the
command line and ``env`` are the whole configuration of the server, so an
``KZERO_API_KEY`` or ``KZERO_MAX_RUNNING_REQUESTS`` left in a shell cannot turn
every request of a test or a benchmark into a 401 or change its batch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

import httpx

import predictor

# A CPU cold start of the bundled model is a few seconds; the bound is generous
# because CI machines and this one are shared and noisy.
READY_TIMEOUT_S = 120.0
READY_POLL_S = 0.1
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``KZERO_*``, with ``extra`` on top.

    ``PYTHONPATH`` leads with the source root of the predictor package this
    harness imported, so ``python -m predictor`` in the child serves the very
    code under test, even from a checkout that is not pip-installed.
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith("KZERO_")}
    source_root = str(Path(predictor.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    return {**env, **(extra or {})}


def wait_for_200(
    process: subprocess.Popen[bytes],
    url: str,
    name: str,
    log: Callable[[], str],
    timeout_s: float = READY_TIMEOUT_S,
    poll_s: float = READY_POLL_S,
) -> None:
    """Poll ``url`` until it answers 200; fail at once, with the log, if ``process`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log()[-3000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(poll_s)
    raise TimeoutError(f"{name} not ready at {url} after {timeout_s:g} s:\n{log()[-3000:]}")


class ServerProcess:
    """One server child process: started at construction, stopped by ``stop`` (or ``with``).

    Its output goes to a log file; ``log()`` still reads it after ``stop``.
    """

    def __init__(
        self, name: str, command: Sequence[str], port: int, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.command = list(command)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the process
            prefix=f"kzero-{name}-", suffix=".log", delete=False
        )
        self._final_log: str | None = None
        self.process = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT, env=clean_env(env)
        )

    def log(self) -> str:
        if self._final_log is not None:
            return self._final_log
        return self._read_log()

    def _read_log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def wait_for_200(
        self, path: str, timeout_s: float = READY_TIMEOUT_S, poll_s: float = READY_POLL_S
    ) -> None:
        wait_for_200(self.process, f"{self.url}{path}", self.name, self.log, timeout_s, poll_s)

    def wait_exit(self, timeout_s: float = READY_TIMEOUT_S) -> int:
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited in time; keeps the log's text."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        if self._final_log is None:
            self._log.close()
            self._final_log = self._read_log()
            Path(self._log.name).unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class PredictorProcess(ServerProcess):
    """``python -m predictor`` (or another entry script taking its flags) with ``args``.

    ``python -m predictor`` is ``kzero serve``: the container's entry point.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        script: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        name: str = "predictor",
    ) -> None:
        port = free_port()
        self._prefix_dir = _own_prefix_cache(args)
        own = ["--prefix_cache_dir", str(self._prefix_dir)] if self._prefix_dir else []
        command = [
            *(script or [sys.executable, "-m", "predictor"]),
            "--http_port",
            str(port),
            *own,
            *args,
        ]
        super().__init__(name, command, port, env)

    def stop(self) -> None:
        super().stop()
        if self._prefix_dir is not None:
            shutil.rmtree(self._prefix_dir, ignore_errors=True)

    def wait_ready(
        self, model_name: str, timeout_s: float = READY_TIMEOUT_S, poll_s: float = READY_POLL_S
    ) -> None:
        """Until the model's own readiness (KServe's ``/v1/models/<name>``) answers 200."""
        self.wait_for_200(f"/v1/models/{model_name}", timeout_s, poll_s)


def _own_prefix_cache(args: Sequence[str]) -> Path | None:
    """A fresh prefix cache directory, like a pod's first start on an empty volume,
    unless ``args`` choose one: prefixes one server saved never leak into another's
    figures, and nothing is written under the user's own cache."""
    chosen = ("--prefix_cache_dir", "--prefix-cache-dir", "--cache_dir", "--cache-dir")
    if any(arg.split("=", 1)[0] in chosen for arg in args):
        return None
    return Path(tempfile.mkdtemp(prefix="kzero-prefixes-"))


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit, so the ``finally`` that stops server children runs."""

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
