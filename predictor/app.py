"""The HTTP surface kzero adds to KServe's app: OpenAI routes, error handlers, the
body limit, :predict's cancellation on disconnect, API keys.

``mount`` works on any FastAPI app: the server mounts on
``kserve.model_server.app`` (the app KServe's ``ModelServer`` serves, next to
its ``/v1/models/<name>``, ``/v2/health/*``, ``/metrics`` and ``:predict``),
and tests mount on a fresh app to drive the doors in-process.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI

from predictor.auth import ApiKeyMiddleware, ModelManagementGuard
from predictor.body_limit import BodyLimitMiddleware
from predictor.disconnect import CancelOnDisconnectMiddleware
from predictor.errors import ServingError
from predictor.generation import GenerationService
from predictor.model import PredictError, predict_error_handler
from predictor.openai.errors import openai_error_handler
from predictor.openai.router import create_openai_router
from predictor.settings import Settings

logger = logging.getLogger(__name__)

# KServe's v1 and v2 inference routes: their handlers read nothing after the body.
PREDICT_PATH = re.compile(r"^/v1/models/[^/]+:predict$|^/v2/models/[^/]+(/versions/[^/]+)?/infer$")


def mount(
    app: FastAPI,
    service: GenerationService,
    settings: Settings,
    key_hashes: tuple[bytes, ...],
    admin_key_hashes: tuple[bytes, ...] = (),
) -> FastAPI:
    """Add kzero's routes, error handlers, middleware and (when keys are configured) the key check."""
    app.add_exception_handler(ServingError, openai_error_handler)
    app.add_exception_handler(PredictError, predict_error_handler)
    app.include_router(create_openai_router(service))
    # Starlette runs the middleware added last first: the key check, the admin
    # check of model management, the body limit (no unauthenticated upload is
    # read), then :predict's watch.
    app.add_middleware(CancelOnDisconnectMiddleware, path=PREDICT_PATH)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(ModelManagementGuard, admin_key_hashes=admin_key_hashes)
    if key_hashes:
        app.add_middleware(
            ApiKeyMiddleware,
            key_hashes=key_hashes,
            guard_health=settings.auth_health,
            guard_metrics=settings.auth_metrics,
        )
        logger.info("API keys: %d configured; inference routes need a Bearer key", len(key_hashes))
    return app
