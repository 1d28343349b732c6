"""A pod still downloading its model is observable, and KzeroCacheDownloadFailing sees it.

A remote GGUF is fetched after the port opens (predictor/model_plan.py), so
while the download runs /metrics already shows the cache miss, readiness
answers 503, and a real Prometheus evaluating dashboards/rules/kzero-rules.yaml
puts the alert in pending (its `for: 30m` is what would fire it). Once the
download completes the pod becomes ready and the alert resolves. A SIGTERM
mid-download stops the pod at once, and the next pod completes the fetch.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from bench.harness.metrics import scrape
from bench.harness.process import PredictorProcess, wait_for_200

from .cache_helpers import MODEL_FILE, SERVED_NAME, answers, entry_files, lookups, model_data
from .origin import serving
from .prometheus_process import PrometheusProcess

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parents[2] / "dashboards" / "rules" / "kzero-rules.yaml"
PATH = f"/models/{MODEL_FILE}"
ALERT = 'ALERTS{alertname="KzeroCacheDownloadFailing"}'
# Far above a drain with nothing in flight; a stop that waited for the held download never ends.
STOP_TIMEOUT_S = 60.0


def _download_phases(url: str) -> float:
    return sum(
        count
        for (name, labels), count in scrape(url).items()
        if name == "kzero_cold_start_seconds_count" and ("phase", "download") in labels
    )


def _wait_for_miss(server: PredictorProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while lookups(server.url, "miss") != 1:
        assert time.monotonic() < deadline, f"no cache miss exported:\n{server.log()}"
        time.sleep(0.2)


def test_a_download_in_progress_is_scraped_and_pends_the_download_alert(tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not found: apt-get install prometheus")
    release = threading.Event()
    with serving({PATH: model_data()}, hold=release) as origin:
        server = PredictorProcess(["--model", origin.url + PATH, "--cache-dir", str(tmp_path)])
        prometheus: PrometheusProcess | None = None
        try:
            wait_for_200(server.process, f"{server.url}/metrics", "predictor", server.log)
            _wait_for_miss(server)
            assert origin.started[PATH] == 1 and origin.completed[PATH] == 0
            assert _download_phases(server.url) == 0
            not_ready = httpx.get(f"{server.url}/v1/models/{SERVED_NAME}", timeout=10)
            assert not_ready.status_code == 503
            completion = httpx.post(
                f"{server.url}/v1/completions",
                json={"model": SERVED_NAME, "prompt": "Hi", "max_tokens": 2},
                timeout=10,
            )
            assert completion.status_code == 503
            assert completion.json()["error"]["code"] == "model_not_ready"

            prometheus = PrometheusProcess([server.url.removeprefix("http://")], [RULES])
            prometheus.wait_ready()
            prometheus.wait_for(f'{ALERT[:-1]},alertstate="pending"}}', lambda v: v == 1)

            release.set()
            server.wait_ready(SERVED_NAME)
            assert answers(server.url)
            assert origin.completed[PATH] == 1
            assert _download_phases(server.url) == 1
            prometheus.wait_for(f"count({ALERT}) or vector(0)", lambda v: v == 0)
        finally:
            if prometheus is not None:
                prometheus.stop()
            server.stop()


def test_sigterm_during_a_download_stops_the_pod_and_the_next_one_completes_it(
    tmp_path: Path,
) -> None:
    release = threading.Event()
    with serving({PATH: model_data()}, hold=release) as origin:
        server = PredictorProcess(["--model", origin.url + PATH, "--cache-dir", str(tmp_path)])
        try:
            wait_for_200(server.process, f"{server.url}/metrics", "predictor", server.log)
            _wait_for_miss(server)
            server.process.send_signal(signal.SIGTERM)
            # Held forever, the download must not hold the process: it exits after
            # the drain (nothing to drain), not when the download would end.
            assert server.wait_exit(STOP_TIMEOUT_S) == 0, server.log()
            assert "abandoning the load" in server.log()
        finally:
            server.stop()
        assert entry_files(tmp_path) == []
        release.set()
        successor = PredictorProcess(["--model", origin.url + PATH, "--cache-dir", str(tmp_path)])
        try:
            successor.wait_ready(SERVED_NAME)
            assert answers(successor.url)
            assert origin.completed[PATH] == 1
        finally:
            successor.stop()
