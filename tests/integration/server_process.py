"""Start a real predictor process on a free loopback port and wait for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

# A CPU cold start here is a few seconds (imports ~2 s, load <1 s); the bound is
# generous because CI machines are shared and noisy.
READY_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_200(
    process: subprocess.Popen[bytes],
    url: str,
    name: str,
    log: Callable[[], str],
    timeout: float = READY_TIMEOUT_S,
) -> None:
    """Poll ``url`` until it answers 200; fail at once, with the log, if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{name} not ready after {timeout}s:\n{log()}")


class PredictorProcess:
    """``python -m predictor`` (or another entry script) as a child process."""

    def __init__(
        self, args: list[str], *, script: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix="kzero-", suffix=".log", delete=False)  # noqa: SIM115
        command = [
            *(script or [sys.executable, "-m", "predictor"]),
            "--http_port",
            str(self.port),
            *args,
        ]
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def wait_ready(self, model_name: str, timeout: float = READY_TIMEOUT_S) -> None:
        wait_for_200(
            self.process, f"{self.url}/v1/models/{model_name}", "predictor", self.log, timeout
        )

    def wait_exit(self, timeout: float = READY_TIMEOUT_S) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
