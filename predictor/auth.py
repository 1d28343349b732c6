"""Optional API keys: only their SHA-256 hashes are kept, compared in constant time.

With keys configured, every route needs ``Authorization: Bearer <key>`` except
the open ones: health and readiness (kubelet and the Knative queue-proxy probe
without credentials) and ``/metrics`` (Prometheus scrapes without them), each
of which can be guarded too. Deny by default: a route KServe adds in a later
release is guarded until someone decides otherwise.

A pure ASGI middleware rather than a FastAPI dependency: it also covers KServe's
own routes, and costs one dictionary lookup per request, not per token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

import orjson
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from predictor.asgi_json import send_json
from predictor.settings import Settings

# KServe's v1 readiness (GET /v1/models/<name>, no ":predict") and the v2 health
# routes. GET /v1/models, the OpenAI model list, is not one of them.
_HEALTH_PATHS = re.compile(
    r"^/$|^/v2/health/(live|ready)$|^/v1/models/[^/:]+$|^/v2/models/[^/]+/ready$"
)
_METRICS_PATH = "/metrics"
# KServe's model repository extension: load and unload a model by name.
MODEL_MANAGEMENT_PATHS = re.compile(r"^/v2/repository(/|$)")

_UNAUTHORIZED_BODY = orjson.dumps(
    {
        "error": {
            "message": "Incorrect or missing API key: send 'Authorization: Bearer <key>'",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
)


class ApiKeyConfigError(ValueError):
    """The configured key file cannot be read or holds no key."""


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def configured_key_hashes(settings: Settings) -> tuple[bytes, ...]:
    """Hashes of every inference key from ``api_key`` and ``api_key_file``; empty when auth is off."""
    return _key_hashes(settings.api_key, settings.api_key_file, "API keys")


def configured_admin_key_hashes(settings: Settings) -> tuple[bytes, ...]:
    """Hashes of the admin keys; empty when the model-management routes are off."""
    return _key_hashes(settings.admin_api_key, settings.admin_api_key_file, "admin keys")


def _key_hashes(inline: SecretStr | None, file: Path | None, what: str) -> tuple[bytes, ...]:
    keys: list[str] = []
    if inline is not None:
        keys += [key.strip() for key in inline.get_secret_value().split(",")]
    if file is not None:
        keys += _read_key_file(file)
    keys = [key for key in keys if key]
    if (inline is not None or file is not None) and not keys:
        raise ApiKeyConfigError(f"{what} are configured but empty: refusing to serve unguarded")
    # The keys themselves go out of scope here; only digests stay in memory.
    return tuple(dict.fromkeys(hash_key(key) for key in keys))


def _read_key_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ApiKeyConfigError(f"cannot read the API key file {path}: {exc}") from None
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def key_matches(presented: str, hashes: Iterable[bytes]) -> bool:
    """Constant time in the key and in which stored hash matches: no early exit."""
    digest = hash_key(presented)
    matched = False
    for stored in hashes:
        matched |= secrets.compare_digest(digest, stored)
    return matched


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class ApiKeyMiddleware:
    """Answers 401 with an OpenAI-style body unless the request carries a valid key."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        key_hashes: tuple[bytes, ...],
        guard_health: bool,
        guard_metrics: bool,
    ) -> None:
        self.app = app
        self.key_hashes = key_hashes
        self.guard_health = guard_health
        self.guard_metrics = guard_metrics

    def is_open(self, path: str) -> bool:
        if MODEL_MANAGEMENT_PATHS.match(path):
            return True  # ModelManagementGuard decides, with admin keys only
        if path == _METRICS_PATH:
            return not self.guard_metrics
        return not self.guard_health and _HEALTH_PATHS.match(path) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Lifespan events carry no request. Every other scope type (http, and
        # websocket, which no route here serves today) must show a key.
        if scope["type"] == "lifespan" or self.is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is not None and key_matches(token, self.key_hashes):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # A websocket.close before websocket.accept makes the server refuse the
            # handshake with HTTP 403 (ASGI spec, WebSocket "Close - send event").
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_json(send, 401, _UNAUTHORIZED_BODY, ((b"www-authenticate", b"Bearer"),))


def _error_body(message: str, code: str) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
        }
    )


class ModelManagementGuard:
    """KServe's ``/v2/repository/...`` routes answer only to an admin key.

    The routes: ``/v2/repository/models/{model_name}/load`` and ``/unload``
    (kserve 0.21.0, kserve/protocol/rest/v2_endpoints.py, ``register_v2_endpoints``);
    an unload calls the model's ``stop()`` (kserve/model_repository.py,
    ``ModelRepository.unload``), which drains the lifecycle, so the process exits.

    Without admin keys configured they are refused (403) for everyone: an
    unload leaves the pod unable to serve, so an inference key, or no key on a
    laptop, must never reach it. Always installed, keys or not.
    """

    def __init__(self, app: ASGIApp, *, admin_key_hashes: tuple[bytes, ...]) -> None:
        self.app = app
        self.admin_key_hashes = admin_key_hashes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or not MODEL_MANAGEMENT_PATHS.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if not self.admin_key_hashes:
            body = _error_body(
                "model management is disabled on this server: configure an admin key",
                "model_management_disabled",
            )
        elif token is None or not key_matches(token, self.admin_key_hashes):
            body = _error_body("model management needs an admin key", "admin_key_required")
        else:
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_json(send, 403, body)
