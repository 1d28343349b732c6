"""Response types of the OpenAI-compatible API, for the OpenAPI document only.

The serving path builds its bodies as plain dicts (`serving.py`: `response_body`,
`event_stream`; `errors.py`: `error_body`;
`router.py`: the model list) and never runs them through these models, so they
cost nothing per request. They describe exactly what the server sends, with
`extra="forbid"`, so that a field added on the wire but not here fails the
schema-conformance fuzz test (tests/integration/test_fuzz_openapi.py) instead
of drifting unnoticed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from predictor.backends.base import FinishReason


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromptTokensDetails(_Strict):
    # Prompt tokens served from the engine's prefix cache, as OpenAI reports them.
    cached_tokens: int = Field(ge=0)


class Usage(_Strict):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)
    prompt_tokens_details: PromptTokensDetails


class AssistantMessage(_Strict):
    role: Literal["assistant"]
    content: str


class ChatChoice(_Strict):
    index: Literal[0]
    message: AssistantMessage
    logprobs: None
    finish_reason: FinishReason


class ChatCompletion(_Strict):
    """The body of a non-streamed `POST /v1/chat/completions`."""

    id: str = Field(pattern=r"^chatcmpl-")
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice] = Field(min_length=1, max_length=1)
    usage: Usage


class CompletionChoice(_Strict):
    index: Literal[0]
    text: str
    logprobs: None
    finish_reason: FinishReason


class TextCompletion(_Strict):
    """The body of a non-streamed `POST /v1/completions`."""

    id: str = Field(pattern=r"^cmpl-")
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice] = Field(min_length=1, max_length=1)
    usage: Usage


class ChatDelta(_Strict):
    """The first chunk carries the role and empty content; the last one, neither."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(_Strict):
    index: Literal[0]
    delta: ChatDelta
    logprobs: None
    finish_reason: FinishReason | None


class ChatCompletionChunk(_Strict):
    """One streamed event of `POST /v1/chat/completions`.

    With `stream_options.include_usage`, every chunk carries `"usage": null`
    and one last chunk, with no choices, carries the usage.
    """

    id: str = Field(pattern=r"^chatcmpl-")
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice] = Field(max_length=1)
    usage: Usage | None = None


class CompletionChunkChoice(_Strict):
    index: Literal[0]
    text: str
    logprobs: None
    finish_reason: FinishReason | None


class TextCompletionChunk(_Strict):
    """One streamed event of `POST /v1/completions`; `usage` as in chat."""

    id: str = Field(pattern=r"^cmpl-")
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChunkChoice] = Field(max_length=1)
    usage: Usage | None = None


class ErrorDetail(_Strict):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(_Strict):
    """Every error the OpenAI routes return, whatever its status."""

    error: ErrorDetail


class ModelCard(_Strict):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(_Strict):
    """`GET /v1/models`: OpenAI's list (`data`) plus KServe v1's (`models`)."""

    object: Literal["list"]
    data: list[ModelCard]
    models: list[str]
