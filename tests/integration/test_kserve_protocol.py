"""KServe's own endpoints stay on the same port: health, v1 predict, model list."""

from __future__ import annotations

import httpx
import pytest

from bench.harness.process import PredictorProcess

from .conftest import MODEL_NAME

pytestmark = pytest.mark.integration


def test_health_endpoints(predictor: PredictorProcess):
    assert httpx.get(f"{predictor.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{predictor.url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{predictor.url}/v1/models/{MODEL_NAME}").json() == {
        "name": MODEL_NAME,
        "ready": True,
    }
    assert httpx.get(f"{predictor.url}/v2/models/{MODEL_NAME}/ready").status_code == 200


def test_model_list_satisfies_kserve_and_openai_clients(predictor: PredictorProcess):
    body = httpx.get(f"{predictor.url}/v1/models").json()
    assert body["models"] == [MODEL_NAME]
    assert [m["id"] for m in body["data"]] == [MODEL_NAME]


def test_v1_predict_answers_prompts_and_conversations(predictor: PredictorProcess):
    payload = {
        "instances": [
            {"prompt": "1, 2, 3, 4,", "max_tokens": 6, "temperature": 0},
            {
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 8,
                "temperature": 0,
            },
        ]
    }
    response = httpx.post(
        f"{predictor.url}/v1/models/{MODEL_NAME}:predict", json=payload, timeout=60
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    assert predictions[0]["usage"]["completion_tokens"] == 6
    assert predictions[0]["finish_reason"] == "length"
    assert predictions[1]["text"]


@pytest.mark.parametrize(
    "payload",
    [
        {"inputs": []},
        {"instances": []},
        {"instances": [{"nothing": 1}]},
        {"instances": [{"prompt": "x", "max_tokens": 0}]},
    ],
)
def test_v1_predict_rejects_bad_instances_with_400(predictor: PredictorProcess, payload: dict):
    response = httpx.post(f"{predictor.url}/v1/models/{MODEL_NAME}:predict", json=payload)
    assert response.status_code == 400
    assert "error" in response.json()
