"""A backend that follows a script, for tests of the layers above the engine.

Never the only proof that a feature works: the integration tests run the same
layers on the real model. It tokenizes one token per word and generates one
token per word of its script, so tests can reason about exact counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from predictor.admission import Admission
from predictor.backends.base import (
    BackendInfo,
    GenerationChunk,
    OnStart,
    Prompt,
    RequestAborted,
    SamplingOptions,
)
from predictor.backends.chat_template import ChatTemplateError
from predictor.generation import GenerationService, RequestLimits
from predictor.lifecycle import Lifecycle

CONTEXT = 100
MODEL = "m"
BACKEND = "fake"


class ScriptedBackend:
    """Yields one token per word of ``script``; ``abort`` ends the stream like an engine would."""

    def __init__(self, script: str = "a b c d e f g h", *, token_delay_s: float = 0.0) -> None:
        self.script = script.split()
        self.token_delay_s = token_delay_s
        self.fail_after: int | None = None
        # While set to an unset event, generation waits on it before its first token.
        self.hold: asyncio.Event | None = None
        self.alive = True
        self.aborted: set[str] = set()
        # Request ids in the order the engine was asked to generate them.
        self.started: list[str] = []
        self.info = BackendInfo(
            backend=BACKEND, device="cpu", quantization="none", context_length=CONTEXT
        )

    def tokenize(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    def render_chat(self, messages: list[dict[str, str]]) -> Prompt:
        if any(m["role"] not in ("system", "user", "assistant") for m in messages):
            raise ChatTemplateError("roles must be system, user or assistant")
        text = " ".join(m["content"] for m in messages)
        return Prompt(text=text, token_ids=self.tokenize(text) or [0])

    async def generate(
        self,
        request_id: str,
        prompt: Prompt,
        options: SamplingOptions,
        on_start: OnStart | None = None,
    ) -> AsyncIterator[GenerationChunk]:
        self.started.append(request_id)
        if on_start:
            on_start()
        if self.hold is not None:
            await self.hold.wait()
        for index, word in enumerate(self.script[: options.max_tokens], start=1):
            await asyncio.sleep(self.token_delay_s)
            if request_id in self.aborted:
                raise RequestAborted(request_id)
            if self.fail_after is not None and index > self.fail_after:
                self.alive = False
                raise RuntimeError("decode failed")
            last = index == options.max_tokens or index == len(self.script)
            reason = ("length" if index == options.max_tokens else "stop") if last else None
            yield GenerationChunk(text=word, num_tokens=1, finish_reason=reason)

    async def abort(self, request_id: str) -> None:
        self.aborted.add(request_id)

    async def healthy(self) -> bool:
        return self.alive

    async def load(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


def scripted_service(
    backend: ScriptedBackend | None = None,
    *,
    ready: bool = True,
    max_running: int = 1,
    max_queued: int = 4,
    **limits: float,
) -> GenerationService:
    """A service over a scripted backend, with its own lifecycle; max_tokens_cap 50 by default."""
    lifecycle = Lifecycle(MODEL, drain_timeout_s=1.0)
    service = GenerationService(
        backend or ScriptedBackend(),  # type: ignore[arg-type]
        backend_name=BACKEND,
        model_name=MODEL,
        limits=RequestLimits(**{"max_tokens_cap": 50, **limits}),  # type: ignore[arg-type]
        admission=Admission(max_running=max_running, max_queued=max_queued),
        lifecycle=lifecycle,
    )
    if ready:
        lifecycle.mark_ready()
    return service
