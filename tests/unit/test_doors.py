"""The OpenAI and KServe doors in-process, over a scripted backend.

SSE framing, in-band errors, disconnects, the drain, every error row of the
README's table, and the same refusals counted the same through both doors.
tests/integration proves the same paths with real sockets and the real model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from predictor.auth import hash_key
from predictor.errors import Draining
from predictor.generation import GenerationParams, GenerationService, TextInput
from predictor.lifecycle import State
from predictor.metrics import REQUESTS, REQUESTS_RUNNING, REQUESTS_WAITING
from tests.unit.inprocess import client, kzero_app, sse_payloads, stream_until
from tests.unit.scripted_backend import BACKEND, MODEL, ScriptedBackend, scripted_service

CHAT = "/v1/chat/completions"
TEXT = "/openai/v1/completions"
PREDICT = f"/v1/models/{MODEL}:predict"
HI = [{"role": "user", "content": "hi there"}]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": HI, "max_tokens": 3, **extra}


def requests(status: str) -> float:
    return REQUESTS.labels(MODEL, BACKEND, status)._value.get()


def gauges() -> tuple[float, float]:
    return (
        REQUESTS_RUNNING.labels(MODEL, BACKEND)._value.get(),
        REQUESTS_WAITING.labels(MODEL, BACKEND)._value.get(),
    )


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a state the test depends on; the events it waits for are its own."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.001)


async def test_a_chat_stream_is_framed_as_the_openai_client_expects():
    app = kzero_app(scripted_service())
    async with client(app) as http:
        response = await http.post(
            CHAT, json=chat(stream=True, stream_options={"include_usage": True})
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(response.content)
    assert payloads[-1] == "[DONE]"
    chunks = payloads[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:-1])
    assert text == "abc"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": 3,
        "total_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


async def test_a_text_completion_answers_one_json_body():
    app = kzero_app(scripted_service())
    async with client(app) as http:
        response = await http.post(TEXT, json={"model": MODEL, "prompt": "x y", "max_tokens": 2})
    body = response.json()
    assert response.status_code == 200
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["choices"] == [
        {"index": 0, "text": "ab", "logprobs": None, "finish_reason": "length"}
    ]
    assert body["usage"]["total_tokens"] == 4


async def test_a_stream_that_fails_after_its_first_byte_ends_with_an_error_event_then_done():
    backend = ScriptedBackend()
    backend.fail_after = 1
    service = scripted_service(backend)
    async with client(kzero_app(service)) as http:
        response = await http.post(CHAT, json=chat(stream=True))
    payloads = sse_payloads(response.content)
    assert response.status_code == 200
    assert payloads[-1] == "[DONE]"
    assert payloads[-2]["error"]["type"] == "internal_error"
    assert "Traceback" not in payloads[-2]["error"]["message"]
    assert service.lifecycle.failed, "the backend reports itself dead: the process must exit"


async def test_a_stream_past_its_deadline_ends_with_a_timeout_event():
    service = scripted_service(ScriptedBackend(token_delay_s=0.05), request_timeout_s=0.08)
    async with client(kzero_app(service)) as http:
        response = await http.post(CHAT, json=chat(stream=True, max_tokens=8))
    payloads = sse_payloads(response.content)
    assert payloads[-2]["error"]["code"] == "request_timeout"
    assert payloads[-1] == "[DONE]"


async def test_a_client_that_leaves_mid_stream_aborts_its_request_in_the_engine():
    backend = ScriptedBackend(token_delay_s=0.05)
    service = scripted_service(backend)
    before = requests("aborted")
    chunks = await stream_until(
        kzero_app(service), CHAT, chat(stream=True, max_tokens=8), lambda sent: len(sent) >= 3
    )
    assert len(chunks) < 10, "the stream stopped soon after the client left"
    assert len(backend.aborted) == 1
    assert requests("aborted") == before + 1
    assert service.admission.in_flight == 0
    assert gauges() == (0, 0)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_a_client_that_leaves_while_queued_never_reaches_the_engine(stream: bool):
    backend = ScriptedBackend()
    backend.hold = asyncio.Event()
    service = scripted_service(backend, max_running=1)
    app = kzero_app(service)
    gone = asyncio.Event()
    async with client(app) as http:
        first = asyncio.create_task(http.post(CHAT, json=chat(max_tokens=8)))
        await until(lambda: len(backend.started) == 1)
        queued = asyncio.create_task(stream_until(app, CHAT, chat(stream=stream), gone=gone))
        await until(lambda: service.admission.in_flight == 2)
        gone.set()
        await queued
        assert service.admission.in_flight == 1, "the queued place is freed at once"
        backend.hold.set()
        assert (await first).status_code == 200
    assert len(backend.started) == 1
    assert service.admission.in_flight == 0
    assert gauges() == (0, 0)


async def test_during_the_drain_new_requests_are_refused_and_late_ones_cut_off_in_band():
    backend = ScriptedBackend()
    backend.hold = asyncio.Event()
    service = scripted_service(backend)
    app = kzero_app(service)
    async with client(app) as http:
        running = asyncio.create_task(http.post(CHAT, json=chat(stream=True, max_tokens=8)))
        await until(lambda: len(backend.started) == 1)
        service.lifecycle.request_drain()
        refused = await http.post(CHAT, json=chat())
        ready = await http.get(f"/v1/models/{MODEL}")
        await service.cut_off(Draining)
        backend.hold.set()
        cut = sse_payloads((await running).content)
    assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
    assert refused.json()["error"]["code"] == "shutting_down"
    assert ready.status_code == 503
    assert cut[-2]["error"]["code"] == "shutting_down" and cut[-1] == "[DONE]"


# --- the README's error table, row by row ----------------------------------------


def _not_ready(service: GenerationService) -> None:
    service.lifecycle._state = State.LOADING  # as before the load finished


ERROR_ROWS = [
    # (name, request kwargs, set-up, status, code, retry-after)
    ("malformed JSON", {"content": b"{", "headers": {"content-type": "application/json"}}, None, 400, "invalid_json", None),
    ("invalid field", {"json": chat(temperature=3)}, None, 400, None, None),
    ("context exceeded", {"json": chat(max_tokens=50, messages=[{"role": "user", "content": "w " * 60}])}, None, 400, "context_length_exceeded", None),
    ("max_tokens above the cap", {"json": chat(max_tokens=51)}, None, 400, None, None),
    ("unknown model", {"json": chat(model="other")}, None, 404, "model_not_found", None),
    ("body too large", {"json": chat(messages=[{"role": "user", "content": "x" * 2048}])}, None, 413, "request_too_large", None),
    ("not JSON content type", {"content": b"{}", "headers": {"content-type": "text/plain"}}, None, 415, "unsupported_media_type", None),
    ("loading", {"json": chat()}, _not_ready, 503, "model_not_ready", "5"),
    ("draining", {"json": chat()}, lambda s: s.lifecycle.request_drain(), 503, "shutting_down", "1"),
    ("engine dead", {"json": chat()}, lambda s: s.lifecycle.fail("test"), 503, "engine_dead", "5"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("request_kwargs", "set_up", "status", "code", "retry_after"),
    [row[1:] for row in ERROR_ROWS],
    ids=[row[0] for row in ERROR_ROWS],
)
async def test_each_error_row_has_its_status_code_and_openai_body(
    request_kwargs: dict[str, Any],
    set_up: Any,
    status: int,
    code: str | None,
    retry_after: str | None,
):
    service = scripted_service()
    if set_up is not None:
        set_up(service)
    async with client(kzero_app(service, max_request_bytes=1024)) as http:
        response = await http.post(CHAT, **request_kwargs)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert response.headers.get("retry-after") == retry_after


async def test_a_full_server_answers_429_with_retry_after():
    service = scripted_service(max_running=1, max_queued=0)
    held = await service.prepare(TextInput("x"), GenerationParams(max_tokens=1))
    async with client(kzero_app(service)) as http:
        response = await http.post(CHAT, json=chat())
    held.close()
    assert (response.status_code, response.headers["retry-after"]) == (429, "1")
    assert response.json()["error"]["type"] == "rate_limit_error"


async def test_a_missing_key_is_401_when_keys_are_configured():
    app = kzero_app(scripted_service(), key_hashes=(hash_key("secret"),))
    async with client(app) as http:
        refused = await http.post(CHAT, json=chat())
        allowed = await http.post(CHAT, json=chat(), headers={"Authorization": "Bearer secret"})
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert allowed.status_code == 200


# --- both doors, one preparation path ----------------------------------------------


async def _send_refusals(door: str, service: GenerationService) -> list[int]:
    """The same three refusals through one door: a field out of range (refused while
    parsing), max_tokens above the cap (refused by prepare), a full server."""
    async with client(kzero_app(service)) as http:

        async def post(**fields: Any) -> int:
            if door == "openai":
                return (await http.post(CHAT, json=chat(**fields))).status_code
            instance = {"messages": HI, "max_tokens": 3, **fields}
            return (await http.post(PREDICT, json={"instances": [instance]})).status_code

        statuses = [await post(temperature=3), await post(max_tokens=51)]
        held = await service.prepare(TextInput("x"), GenerationParams(max_tokens=1))
        statuses.append(await post())
        held.close()
        return statuses


async def test_both_doors_refuse_alike_and_count_alike():
    counts = {}
    statuses = {}
    for door in ("openai", "predict"):
        service = scripted_service(max_running=1, max_queued=0)
        before = {status: requests(status) for status in ("invalid", "rejected")}
        statuses[door] = await _send_refusals(door, service)
        counts[door] = {status: requests(status) - before[status] for status in before}
    assert statuses == {"openai": [400, 400, 429], "predict": [400, 400, 429]}
    assert counts["openai"] == counts["predict"] == {"invalid": 2, "rejected": 1}


async def test_predict_answers_each_instance_and_counts_each_request():
    service = scripted_service(max_running=2)
    before = requests("ok")
    async with client(kzero_app(service)) as http:
        response = await http.post(
            PREDICT,
            json={
                "instances": [{"prompt": "a b", "max_tokens": 2}, {"messages": HI, "max_tokens": 1}]
            },
        )
    assert response.status_code == 200
    assert [p["text"] for p in response.json()["predictions"]] == ["ab", "a"]
    assert requests("ok") == before + 2
    assert service.admission.in_flight == 0


# --- :predict's own limits ----------------------------------------------------------


async def test_predict_refuses_more_instances_than_the_cap():
    service = scripted_service()
    instances = [{"prompt": "x", "max_tokens": 1}] * 17
    async with client(kzero_app(service)) as http:
        response = await http.post(PREDICT, json={"instances": instances})
    assert response.status_code == 400
    assert "17 instances" in response.json()["error"]
    assert service.admission.in_flight == 0


async def test_predict_is_admitted_whole_or_refused_whole():
    backend = ScriptedBackend()
    service = scripted_service(backend, max_running=1, max_queued=1)
    instances = [{"prompt": "x", "max_tokens": 1}] * 3
    async with client(kzero_app(service)) as http:
        response = await http.post(PREDICT, json={"instances": instances})
    assert (response.status_code, response.headers["retry-after"]) == (429, "1")
    assert backend.started == [], "no instance of a refused request runs"
    assert service.admission.in_flight == 0


async def test_predict_bodies_above_the_limit_are_refused_before_they_are_read_or_tokenized():
    backend = ScriptedBackend()
    tokenized: list[str] = []
    backend.tokenize = lambda text: tokenized.append(text) or [0]  # type: ignore[method-assign]
    service = scripted_service(backend)
    big = {"instances": [{"prompt": "x " * 2000, "max_tokens": 1}]}
    async with client(kzero_app(service, max_request_bytes=1024)) as http:
        response = await http.post(PREDICT, json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert tokenized == []


async def test_a_predict_client_that_leaves_stops_every_instance():
    backend = ScriptedBackend()
    backend.hold = asyncio.Event()
    service = scripted_service(backend, max_running=2)
    before = requests("aborted")
    gone = asyncio.Event()
    body = {"instances": [{"prompt": "x", "max_tokens": 8}] * 2}
    leaving = asyncio.create_task(stream_until(kzero_app(service), PREDICT, body, gone=gone))
    await until(lambda: len(backend.started) == 2)
    gone.set()
    # Without the cancellation the instances would run to the end of a hold that never ends.
    chunks = await asyncio.wait_for(leaving, timeout=30)
    assert chunks == [], "nobody is left to answer"
    assert requests("aborted") == before + 2
    assert service.admission.in_flight == 0
    assert gauges() == (0, 0)
