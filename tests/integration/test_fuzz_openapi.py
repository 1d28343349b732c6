"""Schemathesis fuzzes the OpenAI routes of a real predictor against its own /openapi.json.

Every generated request, valid or not, must get an answer that the document
declares: no 5xx, a documented status and Content-Type, and a body (or, for a
stream, every Server-Sent Event) that matches the declared schema. The run is
seeded and derandomized, so CI replays the same requests each time, and small
limits (8 tokens, a 128-token context) keep the real generations cheap.

KServe's own routes (``/``, ``/metrics``, ``/v1/models/<name>``, ``:predict``,
``/v2/...``) are left out: they are KServe's to document and fix, not ours.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bench.harness.process import PredictorProcess

pytestmark = pytest.mark.integration

MODEL_NAME = "smollm2"
API_KEY = "sk-kzero-fuzz-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
OPENAI_ROUTES = r"^/(openai/)?v1/(chat/completions|completions|models)$"
SEED = 6_2026
# Per operation and fuzzing mode; the examples and coverage phases add their own
# cases. Six operations take about a minute on two cores.
MAX_EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_predictor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorProcess]:
    key_file = tmp_path_factory.mktemp("secret") / "api-keys"
    key_file.write_text(f"{API_KEY}\n")
    server = PredictorProcess(
        [
            "--model_name",
            MODEL_NAME,
            "--api_key_file",
            str(key_file),
            "--max_tokens_cap",
            "8",
            "--n_ctx",
            "128",
            "--max_request_bytes",
            "16384",
        ]
    )
    try:
        server.wait_ready(MODEL_NAME)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def openapi_document(fuzz_predictor: PredictorProcess) -> dict[str, Any]:
    return httpx.get(f"{fuzz_predictor.url}/openapi.json", headers=AUTH).json()


@pytest.fixture(scope="module")
def openai_schema(fuzz_predictor: PredictorProcess) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": AUTH,
            "request-timeout": 60,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            # One operation at a time: there are no links between them to follow.
            "phases": {"stateful": {"enabled": False}},
        }
    )
    schema = schemathesis.openapi.from_url(
        f"{fuzz_predictor.url}/openapi.json", config=config, headers=AUTH
    )

    @schema.hook
    def flatmap_body(_: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
        # A random "model" is a 404 before any generation; name the served model
        # in about half the cases so that sampling parameters reach the engine.
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            return st.sampled_from([body, {**body, "model": MODEL_NAME}])
        return st.just(body)

    return schema


fuzzed = schemathesis.pytest.from_fixture("openai_schema").include(path_regex=OPENAI_ROUTES)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # Schemathesis 4.32.5's fixture loader reads and relabels Node._nodeid, which
    # pytest 9.2 replaced with Node._id; it only names the per-operation reports.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@fuzzed.parametrize()
def test_openai_routes_answer_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)


def test_every_reference_in_the_document_resolves(openapi_document: dict[str, Any]) -> None:
    schemas = openapi_document["components"]["schemas"]
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(openapi_document)
    assert refs
    prefix = "#/components/schemas/"
    assert all(ref.startswith(prefix) and ref.removeprefix(prefix) in schemas for ref in refs), refs


def test_the_model_list_documented_is_ours_not_kserves(openapi_document: dict[str, Any]) -> None:
    # KServe registers its own GET /v1/models after ours; ours answers, so ours is documented.
    for path in ("/v1/models", "/openai/v1/models"):
        ok = openapi_document["paths"][path]["get"]["responses"]["200"]
        assert ok["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ModelList"
        }


def _validate(schema: schemathesis.BaseSchema, path: str, method: str, response: Any) -> None:
    schema[path][method].validate_response(response)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/openai/v1/completions"])
def test_errors_the_fuzzer_cannot_reach_match_the_document(
    openai_schema: schemathesis.BaseSchema, fuzz_predictor: PredictorProcess, path: str
) -> None:
    """401, 413 and 415 come before any body is parsed, so generated bodies never reach them."""
    url = f"{fuzz_predictor.url}{path}"
    answers = {
        401: httpx.post(url, json={"model": MODEL_NAME}),
        413: httpx.post(
            url, content=b"x" * 20_000, headers={**AUTH, "Content-Type": "application/json"}
        ),
        415: httpx.post(url, content=b"{}", headers={**AUTH, "Content-Type": "text/plain"}),
    }
    for status, response in answers.items():
        assert response.status_code == status, response.text
        _validate(openai_schema, path, "POST", response)
    models = httpx.get(f"{fuzz_predictor.url}/v1/models")
    assert models.status_code == 401
    _validate(openai_schema, "/v1/models", "GET", models)


@pytest.mark.parametrize("prompt", ["", [""]])
def test_an_empty_prompt_is_refused_and_the_server_lives_on(
    predictor: PredictorProcess, prompt: str | list[str]
) -> None:
    # Found by this fuzzer: a zero-token prompt used to reach llama_decode, fail
    # there and take the engine down with it.
    response = httpx.post(
        f"{predictor.url}/v1/completions", json={"model": MODEL_NAME, "prompt": prompt}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "prompt"
    assert httpx.get(f"{predictor.url}/v1/models/{MODEL_NAME}").status_code == 200
