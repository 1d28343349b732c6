"""One real predictor with the bundled SmolLM2 model, shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.harness.process import PredictorProcess

MODEL_NAME = "smollm2"


@pytest.fixture(scope="session")
def predictor() -> Iterator[PredictorProcess]:
    server = PredictorProcess(
        ["--model_name", MODEL_NAME, "--max_tokens_cap", "2048", "--max_request_bytes", "65536"]
    )
    try:
        server.wait_ready(MODEL_NAME)
        yield server
    finally:
        server.stop()
