"""API keys and request limits on a real predictor: the statuses, bodies and headers clients see."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from bench.harness.process import PredictorProcess
from bench.harness.sse import DONE, events

pytestmark = pytest.mark.integration

NAME = "smollm2"
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
KEY = "sk-kzero-test-0123456789"
# At temperature 0 the model keeps counting: a request that runs until its limit.
ENDLESS = {
    "model": "smollm2",
    "prompt": "1, 2, 3, 4, 5, 6, 7, 8,",
    "temperature": 0,
    "max_tokens": 4000,
}


def chat(max_tokens: int = 4, **extra: object) -> dict[str, object]:
    return {
        "model": NAME,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": max_tokens,
        **extra,
    }


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorProcess]:
    key_file = tmp_path_factory.mktemp("secret") / "api-keys"
    key_file.write_text(f"# mounted from a Secret\n{KEY}\n")
    server = PredictorProcess(
        [
            "--model_name",
            NAME,
            "--api_key_file",
            str(key_file),
            "--max_running_requests",
            "1",
            "--max_queued_requests",
            "0",
            "--max_prompt_tokens",
            "64",
            "--max_stop_sequences",
            "2",
            "--request_timeout_s",
            "4",
            "--max_tokens_cap",
            "4000",
        ]
    )
    try:
        server.wait_ready(NAME)
        yield server
    finally:
        server.stop()


def authorized(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_official_client_works_with_the_key_and_gets_401_without(guarded: PredictorProcess):
    good = openai.OpenAI(base_url=f"{guarded.url}/v1", api_key=KEY)
    answer = good.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert answer.choices[0].finish_reason in ("stop", "length")
    bad = openai.OpenAI(base_url=f"{guarded.url}/v1", api_key="sk-wrong")
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/openai/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("GET", "/v1/models"),
        ("POST", f"/v1/models/{NAME}:predict"),
    ],
)
def test_inference_routes_refuse_a_missing_key(guarded: PredictorProcess, method: str, path: str):
    response = httpx.request(method, guarded.url + path, json={}, timeout=30)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    "path", ["/metrics", f"/v1/models/{NAME}", f"/v2/models/{NAME}/ready", "/v2/health/live"]
)
def test_health_and_metrics_stay_open_without_a_key(guarded: PredictorProcess, path: str):
    assert httpx.get(guarded.url + path, timeout=30).status_code == 200


def test_a_prompt_above_the_limit_is_400(guarded: PredictorProcess):
    long_prompt = {"role": "user", "content": "word " * 200}
    response = httpx.post(
        guarded.url + CHAT,
        json={**chat(), "messages": [long_prompt]},
        headers=authorized(),
        timeout=30,
    )
    assert response.status_code == 400
    assert "limit of 64" in response.json()["error"]["message"]


def test_too_many_stop_sequences_is_400(guarded: PredictorProcess):
    response = httpx.post(
        guarded.url + CHAT, json=chat(stop=["a", "b", "c"]), headers=authorized(), timeout=30
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stop"


def test_a_request_past_the_timeout_is_504_and_a_stream_ends_with_an_error_event(
    guarded: PredictorProcess,
):
    response = httpx.post(guarded.url + COMPLETIONS, json=ENDLESS, headers=authorized(), timeout=30)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "request_timeout"
    with httpx.stream(
        "POST",
        guarded.url + COMPLETIONS,
        json={**ENDLESS, "stream": True},
        headers=authorized(),
        timeout=30,
    ) as streamed:
        received = list(events(streamed.iter_lines()))
    assert received[-2]["error"]["code"] == "request_timeout"
    assert received[-1] == DONE


def test_beyond_running_and_queued_requests_is_429_with_retry_after(guarded: PredictorProcess):
    # One running slot, no queue: while a long request runs, the next is refused.
    started = threading.Event()

    def long_request() -> None:
        with httpx.stream(
            "POST",
            guarded.url + CHAT,
            json=chat(4000, stream=True),
            headers=authorized(),
            timeout=30,
        ) as streamed:
            for _ in streamed.iter_lines():
                started.set()

    runner = threading.Thread(target=long_request, daemon=True)
    runner.start()
    assert started.wait(30)
    refused = httpx.post(guarded.url + CHAT, json=chat(), headers=authorized(), timeout=30)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    runner.join(30)
    # The slot comes back when the request ends (here: at its timeout).
    assert (
        httpx.post(guarded.url + CHAT, json=chat(), headers=authorized(), timeout=30).status_code
        == 200
    )


def test_an_empty_key_file_refuses_to_start(tmp_path: Path):
    key_file = tmp_path / "api-keys"
    key_file.write_text("\n")
    server = PredictorProcess(["--api_key_file", str(key_file)])
    try:
        assert server.wait_exit(120) == 1
        assert "API keys are configured but empty" in server.log()
    finally:
        server.stop()
