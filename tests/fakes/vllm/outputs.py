"""Fake ``vllm.outputs``: the fields of a streamed output that kzero reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    # Prompt tokens found in the prefix cache; the same on every output of a
    # request (vllm/outputs.py and v1/engine/output_processor.py at v0.11.0).
    num_cached_tokens: int | None = None
