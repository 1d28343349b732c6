"""Render a model's chat template in a sandbox.

GGUF files carry a Jinja chat template in ``tokenizer.chat_template``. A model
file is untrusted input: a template can try to reach Python internals
(CVE-2024-34359 in llama-cpp-python). ``ImmutableSandboxedEnvironment`` blocks
attribute access to internals and mutation of objects passed in.
"""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


class ChatTemplateError(ValueError):
    """The template failed to render these messages (bad roles, bad template)."""


def _raise_exception(message: str) -> None:
    # Hugging Face templates call raise_exception() to reject, e.g., a
    # conversation that does not alternate user/assistant roles.
    raise ChatTemplateError(message)


class ChatTemplate:
    """A compiled, sandboxed chat template plus the special tokens it refers to."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = _raise_exception
        try:
            self._template = environment.from_string(source)
        except TemplateError as exc:
            raise ChatTemplateError(f"model chat template does not compile: {exc}") from exc
        self._bos_token = bos_token
        self._eos_token = eos_token

    def render(self, messages: list[dict[str, str]], **extra: Any) -> str:
        """The prompt text for ``messages``, ending with the assistant's turn opener."""
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=True,
                bos_token=self._bos_token,
                eos_token=self._eos_token,
                **extra,
            )
        except ChatTemplateError:
            raise
        except TemplateError as exc:
            raise ChatTemplateError(f"chat template failed: {exc}") from exc
