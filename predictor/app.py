"""The HTTP surface kzero adds to KServe's app: OpenAI routes, error handlers, API keys.

``mount`` works on any FastAPI app: the server mounts on
``kserve.model_server.app`` (the app KServe's ``ModelServer`` serves, next to
its ``/v1/models/<name>``, ``/v2/health/*``, ``/metrics`` and ``:predict``),
and tests mount on a fresh app to drive the doors in-process.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from predictor.auth import ApiKeyMiddleware
from predictor.errors import ServingError
from predictor.generation import GenerationService
from predictor.model import PredictError, predict_error_handler
from predictor.openai.errors import openai_error_handler
from predictor.openai.router import create_openai_router
from predictor.settings import Settings

logger = logging.getLogger(__name__)


def mount(
    app: FastAPI, service: GenerationService, settings: Settings, key_hashes: tuple[bytes, ...]
) -> FastAPI:
    """Add kzero's routes, error handlers and (when keys are configured) the key check."""
    app.add_exception_handler(ServingError, openai_error_handler)
    app.add_exception_handler(PredictError, predict_error_handler)
    app.include_router(create_openai_router(service, max_request_bytes=settings.max_request_bytes))
    if key_hashes:
        app.add_middleware(
            ApiKeyMiddleware,
            key_hashes=key_hashes,
            guard_health=settings.auth_health,
            guard_metrics=settings.auth_metrics,
        )
        logger.info("API keys: %d configured; inference routes need a Bearer key", len(key_hashes))
    return app
