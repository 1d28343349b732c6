"""Every bad request gets its status and an OpenAI-style body, and the server keeps serving."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from bench.harness.process import PredictorProcess

from .conftest import MODEL_NAME

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hi"}]


def post_json(path: str, body: object) -> Callable[[str], httpx.Response]:
    return lambda url: httpx.post(url + path, json=body, timeout=60)


def post_raw(path: str, content: bytes, content_type: str) -> Callable[[str], httpx.Response]:
    return lambda url: httpx.post(
        url + path, content=content, headers={"content-type": content_type}, timeout=60
    )


CASES: dict[str, tuple[Callable[[str], httpx.Response], int, str | None]] = {
    "malformed JSON": (
        post_raw(CHAT, b'{"model": "x", "messages": [', "application/json"),
        400,
        "invalid_json",
    ),
    "JSON that is not an object": (post_json(CHAT, ["not", "an", "object"]), 400, None),
    "wrong content type": (
        post_raw(CHAT, b"model=x", "application/x-www-form-urlencoded"),
        415,
        "unsupported_media_type",
    ),
    "missing content type": (
        lambda url: httpx.post(url + CHAT, content=b"{}"),
        415,
        "unsupported_media_type",
    ),
    "unknown model": (
        post_json(CHAT, {"model": "gpt-9", "messages": HELLO}),
        404,
        "model_not_found",
    ),
    "prompt longer than the context": (
        post_json("/v1/completions", {"model": MODEL_NAME, "prompt": "hi " * 9000}),
        400,
        "context_length_exceeded",
    ),
    "max_tokens over the cap": (
        post_json(CHAT, {"model": MODEL_NAME, "messages": HELLO, "max_tokens": 5000}),
        400,
        None,
    ),
    "body over the size cap": (
        post_json(
            CHAT, {"model": MODEL_NAME, "messages": [{"role": "user", "content": "x" * 70_000}]}
        ),
        413,
        "request_too_large",
    ),
    "no messages": (post_json(CHAT, {"model": MODEL_NAME, "messages": []}), 400, None),
    "temperature out of range": (
        post_json(CHAT, {"model": MODEL_NAME, "messages": HELLO, "temperature": 5}),
        400,
        None,
    ),
    "n above 1": (post_json(CHAT, {"model": MODEL_NAME, "messages": HELLO, "n": 3}), 400, None),
    "too many stop sequences": (
        post_json(CHAT, {"model": MODEL_NAME, "messages": HELLO, "stop": list("abcde")}),
        400,
        None,
    ),
    "unknown role": (
        post_json(CHAT, {"model": MODEL_NAME, "messages": [{"role": "wizard", "content": "x"}]}),
        400,
        None,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_request_gets_its_status_and_an_openai_error_body(
    predictor: PredictorProcess, case: str
):
    send, status, code = CASES[case]
    response = send(predictor.url)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"]
    if code is not None:
        assert error["code"] == code
    # ...and the server still answers a good request afterwards.
    ok = httpx.post(
        f"{predictor.url}{CHAT}",
        json={"model": MODEL_NAME, "messages": HELLO, "max_tokens": 2},
        timeout=60,
    )
    assert ok.status_code == 200


def test_max_tokens_that_overflows_the_context_is_context_length_exceeded(
    predictor: PredictorProcess,
):
    # ~3000 prompt tokens + 2048 (the cap) > 4096: within the cap, beyond the context.
    response = httpx.post(
        f"{predictor.url}/v1/completions",
        json={"model": MODEL_NAME, "prompt": "hi " * 3000, "max_tokens": 2048},
        timeout=60,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "4096" in error["message"]


def test_max_tokens_over_the_cap_names_the_cap(predictor: PredictorProcess):
    response = httpx.post(
        f"{predictor.url}/v1/completions",
        json={"model": MODEL_NAME, "prompt": "hi", "max_tokens": 5000},
        timeout=60,
    )
    assert response.status_code == 400
    assert "2048" in response.json()["error"]["message"]


def test_validation_errors_name_the_field_without_echoing_input(predictor: PredictorProcess):
    secret = "sk-this-must-not-be-echoed"
    response = httpx.post(
        f"{predictor.url}{CHAT}",
        json={"model": MODEL_NAME, "messages": HELLO, "temperature": secret},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "temperature"
    assert secret not in response.text


def test_the_official_client_raises_typed_errors(predictor: PredictorProcess):
    import openai

    client = openai.OpenAI(base_url=f"{predictor.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=HELLO)
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL_NAME, prompt="hi " * 9000)
    assert caught.value.code == "context_length_exceeded"
