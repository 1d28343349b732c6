"""Readiness follows the model: 503 while it loads, 200 once loaded and warmed up."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from bench.harness.process import PredictorProcess

pytestmark = pytest.mark.integration

NAME = "gated"


def test_model_endpoints_answer_503_until_loaded_then_200(tmp_path: Path):
    gate = tmp_path / "gate"
    script = [sys.executable, str(Path(__file__).with_name("gated_predictor.py"))]
    server = PredictorProcess(
        ["--model_name", NAME], script=script, env={"KZERO_TEST_LOAD_GATE": str(gate)}
    )
    try:
        server.wait_for_200("/v2/health/live")  # the port is open; the model still loads
        # The server is up, the model is not: KServe's model endpoints say so...
        assert httpx.get(f"{server.url}/v1/models/{NAME}").status_code == 503
        assert httpx.get(f"{server.url}/v2/models/{NAME}/ready").status_code == 503
        # ...and so does the OpenAI API, in OpenAI's error shape.
        response = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": NAME, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "model_not_ready"
        assert response.headers["retry-after"]

        gate.touch()
        server.wait_ready(NAME)
        assert httpx.get(f"{server.url}/v2/models/{NAME}/ready").status_code == 200
        answer = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
            timeout=60,
        )
        assert answer.status_code == 200
    finally:
        server.stop()


def test_a_model_that_cannot_load_fails_startup_with_one_clear_line(tmp_path: Path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 16)  # absurd counts
    server = PredictorProcess(["--model", str(broken)])
    try:
        assert server.wait_exit() != 0
        errors = [line for line in server.log().splitlines() if " ERROR " in line]
        assert len(errors) == 1, server.log()
        assert "cannot start" in errors[0] and "implausible header" in errors[0]
    finally:
        server.stop()
