"""No tokens for clients that left, on a real server with real sockets.

Clients that send a request and close the connection while it waits for an
engine slot must cost nothing: the request leaves the queue and never reaches
the engine. A ``:predict`` is admitted whole or refused whole, so a refused one
leaves no instances behind, and one whose client leaves stops every instance.
Each test prints the tokens generated, so a run on an older build shows what
these cases used to cost.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from bench.harness.metrics import scrape, value
from bench.harness.process import PredictorProcess

pytestmark = pytest.mark.integration

NAME = "smollm2"
IDLE_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def server() -> Iterator[PredictorProcess]:
    args = ["--model_name", NAME, "--max_running_requests", "1", "--max_queued_requests", "4"]
    with PredictorProcess(args) as process:
        process.wait_ready(NAME)
        yield process


def generated(server: PredictorProcess) -> float:
    return value(scrape(server.url), "kzero_generation_tokens_total", model_name=NAME)


def wait_idle(server: PredictorProcess) -> None:
    """Until nothing runs or waits (the test's failure shows as a timeout, not a hang)."""
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    while time.monotonic() < deadline:
        samples = scrape(server.url)
        busy = value(samples, "kzero_requests_running", model_name=NAME) + value(
            samples, "kzero_requests_waiting", model_name=NAME
        )
        if busy == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"still busy after {IDLE_TIMEOUT_S}s")


def send_and_leave(server: PredictorProcess, path: str, body: dict, stay_s: float) -> None:
    """A whole HTTP request on a raw socket, then the connection closed before any answer."""
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(head + payload)
        time.sleep(stay_s)


def chat(max_tokens: int, **extra: object) -> dict:
    return {
        "model": NAME,
        "messages": [{"role": "user", "content": "Write a long story about the sea."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        **extra,
    }


def test_clients_that_leave_while_queued_cost_no_tokens(server: PredictorProcess):
    wait_idle(server)
    before = generated(server)
    usage: dict[str, int] = {}

    def run() -> None:
        # Long enough to hold the only slot until every leaver has gone.
        response = httpx.post(f"{server.url}/v1/chat/completions", json=chat(256), timeout=300)
        usage.update(response.json()["usage"])

    running = threading.Thread(target=run, daemon=True)
    running.start()
    while generated(server) == before:
        time.sleep(0.05)
    leavers = [
        threading.Thread(
            target=send_and_leave,
            args=(server, "/v1/chat/completions", chat(32), 0.3),
            daemon=True,
        )
        for _ in range(4)
    ]
    for leaver in leavers:
        leaver.start()
    for leaver in leavers:
        leaver.join()
    running.join()
    wait_idle(server)
    spent = generated(server) - before
    print(
        f"\ntokens generated: {spent:.0f} (the one running request made {usage['completion_tokens']})"
    )
    assert spent == usage["completion_tokens"]


def test_a_refused_predict_leaves_no_instance_running(server: PredictorProcess):
    wait_idle(server)
    before = generated(server)
    instances = [{"prompt": "Once upon a time", "max_tokens": 32}] * 8
    response = httpx.post(
        f"{server.url}/v1/models/{NAME}:predict", json={"instances": instances}, timeout=300
    )
    wait_idle(server)
    spent = generated(server) - before
    print(
        f"\n:predict of 8 instances over 1 running + 4 queued places: {response.status_code}, "
        f"tokens generated: {spent:.0f}"
    )
    assert response.status_code == 429
    assert spent == 0


def test_a_predict_whose_client_leaves_stops_its_instances(server: PredictorProcess):
    wait_idle(server)
    before = generated(server)
    instances = [{"prompt": "Once upon a time", "max_tokens": 200}] * 2
    send_and_leave(server, f"/v1/models/{NAME}:predict", {"instances": instances}, 1.0)
    wait_idle(server)
    spent = generated(server) - before
    print(f"\n:predict of 2 x 200 tokens, client gone after 1 s: tokens generated: {spent:.0f}")
    assert spent < 200
