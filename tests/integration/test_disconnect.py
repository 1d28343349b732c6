"""A client that goes away stops its generation, and the server moves on."""

from __future__ import annotations

import itertools
import time

import httpx
import pytest

from bench.harness.metrics import scrape, value
from bench.harness.process import PredictorProcess
from bench.harness.sse import events

from .conftest import MODEL_NAME

pytestmark = pytest.mark.integration

# Counting never ends on its own, so without the abort this request would run
# for all 2000 tokens (tens of seconds on a CPU).
ENDLESS = {"model": MODEL_NAME, "prompt": "1, 2, 3, 4, 5,", "max_tokens": 2000, "temperature": 0}


def generated(predictor: PredictorProcess) -> float:
    return value(scrape(predictor.url), "kzero_generation_tokens_total", model_name=MODEL_NAME)


def wait_until_idle(predictor: PredictorProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples = scrape(predictor.url)
        if (
            value(samples, "kzero_requests_running") == 0
            and value(samples, "kzero_requests_waiting") == 0
        ):
            return
        time.sleep(0.1)
    raise AssertionError("requests still running after the client disconnected")


@pytest.mark.parametrize("stream", [True, False])
def test_disconnect_stops_generation_and_the_next_request_runs(
    predictor: PredictorProcess, stream: bool
):
    before = generated(predictor)
    with httpx.Client(timeout=60) as client:
        if stream:
            with client.stream(
                "POST", f"{predictor.url}/v1/completions", json={**ENDLESS, "stream": True}
            ) as response:
                # A few events, then the client goes away mid-stream.
                assert len(list(itertools.islice(events(response.iter_lines()), 6))) == 6
        else:
            with pytest.raises(httpx.ReadTimeout):
                client.post(f"{predictor.url}/v1/completions", json=ENDLESS, timeout=1.5)
    wait_until_idle(predictor)
    stopped_at = generated(predictor)
    time.sleep(1.0)
    assert generated(predictor) == stopped_at, (
        "tokens are still being generated after the disconnect"
    )
    assert stopped_at - before < ENDLESS["max_tokens"]

    samples = scrape(predictor.url)
    assert value(samples, "kzero_requests_total", status="aborted") >= 1
    follow_up = httpx.post(
        f"{predictor.url}/v1/completions",
        json={"model": MODEL_NAME, "prompt": "Hello", "max_tokens": 4},
        timeout=60,
    )
    assert follow_up.status_code == 200
    assert follow_up.json()["usage"]["completion_tokens"] == 4
