"""Request types of the OpenAI-compatible API, validated with pydantic.

Unknown fields are ignored, as the OpenAI API and vLLM do, so newer clients keep
working; fields kzero cannot honour (``n`` > 1, ``logprobs``, ``echo``, tools)
are refused with a 400 that names them, instead of being silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from predictor.errors import InvalidBody, InvalidParam
from predictor.generation import ChatInput, GenerationParams, TextInput

RequestT = TypeVar("RequestT", bound=BaseModel)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class TextContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class _SamplingRequest(BaseModel):
    """Fields shared by chat and text completions."""

    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1
    logprobs: Any = None
    tools: Any = None

    @field_validator("logprobs", "tools")
    @classmethod
    def _unsupported(cls, value: Any) -> Any:
        # Only "absent" passes: None, false, or no tools. Compared by identity and
        # type, because 0 == False in Python, and completions' logprobs: 0 still
        # asks for the chosen tokens' logprobs.
        absent = value is None or value is False or (isinstance(value, list) and not value)
        if not absent:
            raise ValueError("is not supported by this server")
        return value

    def generation_params(self) -> GenerationParams:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return GenerationParams(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=stop,
        )

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(_SamplingRequest):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    # The newer name for max_tokens in the chat API; either is accepted.
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None

    def generation_params(self) -> GenerationParams:
        params = super().generation_params()
        if self.max_tokens is None and self.max_completion_tokens is not None:
            return GenerationParams(
                max_tokens=self.max_completion_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=params.seed,
                stop=params.stop,
            )
        return params

    def generation_input(self) -> ChatInput:
        # "developer" is the newer name of "system"; chat templates know "system".
        return ChatInput(
            [
                {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in self.messages
            ]
        )


class CompletionRequest(_SamplingRequest):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    echo: Literal[False] = False

    def generation_input(self) -> TextInput:
        return TextInput(self.prompt if isinstance(self.prompt, str) else self.prompt[0])


def parse_request(model: type[RequestT], payload: Any) -> RequestT:
    """Validate ``payload``; a failure becomes a 400 naming the field by its path.

    The message is built from pydantic's ``loc`` and ``msg`` only, never from
    ``str(exc)``, which can echo input back or leak internals.
    """
    if not isinstance(payload, dict):
        raise InvalidBody("the request body must be a JSON object")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        path = ".".join(str(part) for part in first["loc"])
        raise InvalidParam(f"{path}: {first['msg']}", param=path or None) from None
