"""The engine interface every kzero backend implements.

The serving layer (``predictor.generation``) talks only to this protocol, so the
OpenAI router, the KServe model and the metrics never know which engine runs.
The shape follows vLLM's ``EngineClient``: an async-iterator ``generate`` plus
``abort``, health and shutdown.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


class BackendKind(enum.StrEnum):
    """Which engine serves the model; ``auto`` lets ``select.choose_backend`` decide."""

    AUTO = "auto"
    LLAMACPP = "llamacpp"
    VLLM = "vllm"


FinishReason = Literal["stop", "length"]

# Where the KV of a reused prompt prefix came from: the sequence the request
# ran on ("memory"), another sequence's cells ("copy"), cells a sequence gave
# up and host memory kept ("ram", prefix_ram), or a state file the engine
# restored from the prefix cache volume at start ("disk").
PrefixSource = Literal["memory", "copy", "ram", "disk"]
PREFIX_SOURCES: tuple[PrefixSource, ...] = ("memory", "copy", "ram", "disk")


class BackendLoadError(RuntimeError):
    """The backend cannot serve the model: startup must fail with this message."""


class RequestAborted(Exception):
    """``generate`` raises this when ``abort`` stopped the request (client went away)."""


class BackendDeadError(RuntimeError):
    """The engine has failed and cannot serve further requests."""


@dataclass(frozen=True)
class SamplingOptions:
    """Per-request decoding settings, already validated by the serving layer."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prompt:
    """A prompt as both text and token ids; the ids decide context-length checks."""

    text: str
    token_ids: list[int]


@dataclass(frozen=True)
class GenerationChunk:
    """Output produced since the previous chunk of the same request.

    ``num_tokens`` counts generated tokens (including ones whose text is held
    back, for example a partial stop sequence), so usage and token metrics stay
    exact even when ``text`` is empty.
    """

    text: str
    num_tokens: int
    finish_reason: FinishReason | None = None
    # Set on a request's first chunk only: prompt tokens whose KV the engine
    # reused instead of computing, and where that KV came from.
    cached_tokens: int = 0
    cache_source: PrefixSource | None = None


@dataclass(frozen=True)
class BackendInfo:
    """What is being served, for logs, ``kzero_backend_info`` and ``/v1/models``."""

    backend: str
    device: str
    quantization: str
    context_length: int
    # Requests the engine decodes at once: llama.cpp's sequences, vLLM's max_num_seqs.
    max_parallel: int = 1


# Called on the event loop when a request leaves the backend's queue and starts
# running; the serving layer uses it for queue-time and running/waiting gauges.
OnStart = Callable[[], None]


@runtime_checkable
class Backend(Protocol):
    """One loaded model on one engine."""

    @property
    def info(self) -> BackendInfo:
        """Describes the loaded model; valid after ``load``."""
        ...

    async def load(self) -> None:
        """Load weights and start the engine; raise ``BackendLoadError`` on failure."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Token ids for a completion prompt, with the model's BOS handling."""
        ...

    def render_chat(self, messages: list[dict[str, str]]) -> Prompt:
        """Apply the model's chat template (sandboxed) and tokenize the result."""
        ...

    def generate(
        self,
        request_id: str,
        prompt: Prompt,
        options: SamplingOptions,
        on_start: OnStart | None = None,
    ) -> AsyncIterator[GenerationChunk]:
        """Stream the completion; closing the iterator early aborts the request."""
        ...

    async def abort(self, request_id: str) -> None:
        """Stop a running or queued request; its ``generate`` raises ``RequestAborted``.

        A no-op for unknown or finished ids.
        """
        ...

    async def healthy(self) -> bool:
        """True while the engine can serve requests."""
        ...

    async def shutdown(self) -> None:
        """Release the engine; idempotent."""
        ...
