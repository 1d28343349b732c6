"""API keys: hashes only, constant-time match, which routes are open, the 401 body."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from predictor.auth import (
    ApiKeyConfigError,
    ApiKeyMiddleware,
    ModelManagementGuard,
    configured_admin_key_hashes,
    configured_key_hashes,
    key_matches,
)
from predictor.settings import Settings


def test_keys_from_the_environment_and_a_file_are_kept_as_hashes(tmp_path: Path):
    key_file = tmp_path / "keys"
    key_file.write_text("# rotated 2026-11\nfile-key\n\n  spaced-key  \n")
    hashes = configured_key_hashes(Settings(api_key="env-a, env-b", api_key_file=key_file))
    expected = {
        hashlib.sha256(k.encode()).digest() for k in ("env-a", "env-b", "file-key", "spaced-key")
    }
    assert set(hashes) == expected


def test_no_keys_configured_means_auth_is_off():
    assert configured_key_hashes(Settings()) == ()


@pytest.mark.parametrize("content", ["", "# only a comment\n\n"])
def test_a_key_file_without_keys_refuses_to_start(tmp_path: Path, content: str):
    key_file = tmp_path / "keys"
    key_file.write_text(content)
    with pytest.raises(ApiKeyConfigError, match="empty"):
        configured_key_hashes(Settings(api_key_file=key_file))


def test_an_unreadable_key_file_refuses_to_start(tmp_path: Path):
    with pytest.raises(ApiKeyConfigError, match="cannot read"):
        configured_key_hashes(Settings(api_key_file=tmp_path / "missing"))


def test_key_matches_only_the_exact_key():
    hashes = configured_key_hashes(Settings(api_key="secret-1,secret-2"))
    assert key_matches("secret-2", hashes)
    assert not key_matches("secret-3", hashes)
    assert not key_matches("secret-2 ", hashes)
    assert not key_matches("", hashes)


def _client(*, guard_health: bool = False, guard_metrics: bool = False) -> TestClient:
    async def ok(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("ok")

    paths = [
        "/", "/metrics", "/v2/health/live", "/v2/health/ready", "/v1/models/m",
        "/v2/models/m/ready", "/v2/models/m", "/v1/models", "/v1/models/m:predict",
        "/v1/chat/completions", "/openai/v1/completions", "/v2/models/m/infer", "/docs",
    ]  # fmt: skip

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("open")
        await websocket.close()

    app = Starlette(
        routes=[
            *(Route(p, ok, methods=["GET", "POST"]) for p in paths),
            WebSocketRoute("/ws", echo),
        ]
    )
    hashes = configured_key_hashes(Settings(api_key="good"))
    guarded = ApiKeyMiddleware(
        app, key_hashes=hashes, guard_health=guard_health, guard_metrics=guard_metrics
    )
    return TestClient(guarded)


OPEN_BY_DEFAULT = ["/", "/metrics", "/v2/health/live", "/v2/health/ready", "/v1/models/m", "/v2/models/m/ready"]  # fmt: skip
GUARDED = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/openai/v1/completions"),
    ("GET", "/v1/models"),
    ("POST", "/v1/models/m:predict"),
    ("POST", "/v2/models/m/infer"),
    ("GET", "/v2/models/m"),
    ("GET", "/docs"),
]


@pytest.mark.parametrize("path", OPEN_BY_DEFAULT)
def test_health_and_metrics_stay_open_by_default(path: str):
    assert _client().get(path).status_code == 200


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_inference_and_every_other_route_need_a_key(method: str, path: str):
    client = _client()
    response = client.request(method, path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert (
        client.request(method, path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    assert client.request(method, path, headers={"Authorization": "Basic good"}).status_code == 401
    assert client.request(method, path, headers={"Authorization": "Bearer good"}).status_code == 200
    assert client.request(method, path, headers={"authorization": "bearer good"}).status_code == 200


def test_health_and_metrics_can_be_guarded_too():
    client = _client(guard_health=True, guard_metrics=True)
    for path in OPEN_BY_DEFAULT:
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer good"}).status_code == 200


def test_a_websocket_without_a_key_is_refused_like_any_other_route():
    client = _client()
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws"):
        pass
    assert refused.value.code == 1008
    with client.websocket_connect("/ws", headers={"Authorization": "Bearer good"}) as socket:
        assert socket.receive_text() == "open"


def _management_client(admin_key_hashes: tuple[bytes, ...]) -> TestClient:
    async def ok(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/v2/repository/models/m/unload", ok, methods=["POST"]),
            Route("/v1/chat/completions", ok, methods=["POST"]),
        ]
    )
    inference = ApiKeyMiddleware(
        app,
        key_hashes=configured_key_hashes(Settings(api_key="inference")),
        guard_health=False,
        guard_metrics=False,
    )
    return TestClient(ModelManagementGuard(inference, admin_key_hashes=admin_key_hashes))


def test_model_management_is_refused_to_everyone_without_an_admin_key():
    client = _management_client(())
    for headers in ({}, {"Authorization": "Bearer inference"}):
        response = client.post("/v2/repository/models/m/unload", headers=headers)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "model_management_disabled"


def test_model_management_answers_only_the_admin_key():
    client = _management_client(configured_admin_key_hashes(Settings(admin_api_key="admin")))
    inference = client.post(
        "/v2/repository/models/m/unload", headers={"Authorization": "Bearer inference"}
    )
    assert inference.status_code == 403
    assert inference.json()["error"]["code"] == "admin_key_required"
    admin = client.post("/v2/repository/models/m/unload", headers={"Authorization": "Bearer admin"})
    assert admin.status_code == 200
    # The admin key is not an inference key.
    assert (
        client.post("/v1/chat/completions", headers={"Authorization": "Bearer admin"}).status_code
        == 401
    )
