"""A real Prometheus (the Debian package's binary) on a loopback port, scraping given targets."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

from bench.harness.process import free_port, wait_for_200

READY_TIMEOUT_S = 60.0
# How long to wait for a scrape or a rule evaluation: generous, since a machine
# under load delays both; the tests wait for the event, never for a fixed time.
EVENT_TIMEOUT_S = 120.0


class PrometheusProcess:
    """``prometheus`` with a temporary config and TSDB, scraping every second."""

    def __init__(self, targets: list[str], rule_files: list[Path]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus not found: apt-get install prometheus")
        self._dir = tempfile.TemporaryDirectory(prefix="kzero-prometheus-")
        workdir = Path(self._dir.name)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {"job_name": "kzero", "static_configs": [{"targets": targets}]},
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (workdir / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return (Path(self._dir.name) / "prometheus.log").read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        wait_for_200(self.process, f"{self.url}/-/ready", "prometheus", self.log, timeout)

    def query(self, expr: str, at: float | None = None) -> list[dict[str, object]]:
        """An instant query; raises on a PromQL error, returns the result vector."""
        params: dict[str, str | float] = {"query": expr}
        if at is not None:
            params["time"] = at
        response = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise ValueError(f"{body.get('errorType')}: {body.get('error')} in {expr}")
        return body["data"]["result"]

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The first sample's value of an instant query, or None when it returns nothing."""
        result = self.query(expr, at)
        return float(result[0]["value"][1]) if result else None  # type: ignore[index]

    def wait_for(
        self, expr: str, predicate: Callable[[float], bool], timeout: float = EVENT_TIMEOUT_S
    ) -> float:
        """Poll ``expr`` until ``predicate(first value)`` holds; returns the value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.value(expr)
            if found is not None and predicate(found):
                return found
            time.sleep(0.2)
        raise TimeoutError(f"{expr} did not reach the expected value in {timeout}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self._dir.cleanup()
