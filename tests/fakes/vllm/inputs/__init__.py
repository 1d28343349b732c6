"""Fake ``vllm.inputs``: a tokenized prompt is a plain dict, as in vLLM."""

from typing import TypedDict


class TokensPrompt(TypedDict):
    prompt_token_ids: list[int]
