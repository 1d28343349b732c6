"""Render a model's chat template in a sandbox.

GGUF files carry a Jinja chat template in ``tokenizer.chat_template``. A model
file is untrusted input: a template can try to reach Python internals
(CVE-2024-34359 in llama-cpp-python). ``ImmutableSandboxedEnvironment`` blocks
attribute access to internals and mutation of objects passed in. On top of it,
repetition and powers are bounded, so ``{{ 'x' * 10**12 }}`` is refused instead
of allocating a terabyte, and the errors a template expression can raise become
a ``ChatTemplateError`` (a 400), never a 500 with a traceback.
"""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Callable
from typing import Any

from jinja2 import TemplateError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Far above what a chat template repeats (indentation, separators), far below
# what would exhaust memory.
MAX_REPEAT_ITEMS = 1_000_000
MAX_EXPONENT = 1024
# What a template expression can raise on bad input: 1 + 'a', 1 / 0, range(10**9)
# (OverflowError from the sandbox), a macro calling itself forever.
_RENDER_ERRORS = (
    TemplateError,
    ArithmeticError,
    LookupError,
    TypeError,
    ValueError,
    RecursionError,
)


# Stands in for message i's content while the template renders (render_parts):
# NUL, a per-rendering nonce, the index, NUL.
_MARKER = re.compile("\x00([0-9a-f]{16}):(\\d+)\x00")


class ChatTemplateError(ValueError):
    """The template failed to render these messages (bad roles, bad template)."""


def _raise_exception(message: str) -> None:
    # Hugging Face templates call raise_exception() to reject, e.g., a
    # conversation that does not alternate user/assistant roles.
    raise ChatTemplateError(message)


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus bounds on the operators that can allocate without limit."""

    # Intercepted operators are also kept out of compile-time constant folding,
    # so a bomb in the template source cannot go off while the model loads.
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | bytes | list | tuple)
                    and isinstance(count, int)
                    and len(sequence) * count > MAX_REPEAT_ITEMS
                ):
                    raise SecurityError(
                        f"the template repeats a value to more than {MAX_REPEAT_ITEMS} items"
                    )
        elif operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"the template raises to a power above {MAX_EXPONENT}")
        return super().call_binop(context, operator, left, right)


class ChatTemplate:
    """A compiled, sandboxed chat template plus the special tokens it refers to."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        environment = _BoundedSandbox(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = _raise_exception
        try:
            self._template = environment.from_string(source)
        except (TemplateError, RecursionError) as exc:
            # RecursionError: source nested deeper than the parser can follow.
            raise ChatTemplateError(f"model chat template does not compile: {exc}") from exc
        self._bos_token = bos_token
        self._eos_token = eos_token

    def with_special_tokens(self, *, bos_token: str, eos_token: str) -> ChatTemplate:
        """The same compiled template, rendering with the engine's BOS and EOS text."""
        bound = copy.copy(self)
        bound._bos_token, bound._eos_token = bos_token, eos_token
        return bound

    def render_parts(self, messages: list[dict[str, str]]) -> list[tuple[str, bool]]:
        """The prompt as (text, is_message_content) parts, in order (see ``render_parts_with``)."""
        return render_parts_with(self.render, messages)

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
        except _RENDER_ERRORS as exc:
            raise ChatTemplateError(f"chat template failed: {exc}") from exc


def render_parts_with(
    render: Callable[[list[dict[str, str]]], str], messages: list[dict[str, str]]
) -> list[tuple[str, bool]]:
    """The prompt ``render`` makes of ``messages``, as (text, is_message_content) parts, in order.

    ``render`` is a chat template's rendering: ``ChatTemplate.render`` here, the
    Hugging Face tokenizer's ``apply_chat_template`` in the vLLM backend. It
    runs twice: as is, and with a marker (carrying a random nonce, so content
    cannot imitate one) in place of each message's content. The markers show
    what the template wrote (its own control tokens) apart from what a client
    sent, which must never be read as control tokens. The parts are returned
    only if putting the contents back gives exactly the first rendering; a
    template whose output depends on the contents (a filter, a branch on a
    content's text) gives an empty list instead, and the caller decides.
    """
    text = render(messages)
    nonce = secrets.token_hex(8)
    masked = [
        {**message, "content": f"\x00{nonce}:{index}\x00"} for index, message in enumerate(messages)
    ]
    masked_text = render(masked)
    parts: list[tuple[str, bool]] = []
    position = 0
    for match in _MARKER.finditer(masked_text):
        if match.group(1) != nonce:
            continue  # content that looks like a marker is content: the nonce tells
        if match.start() > position:
            parts.append((masked_text[position : match.start()], False))
        parts.append((messages[int(match.group(2))]["content"], True))
        position = match.end()
    if position < len(masked_text):
        parts.append((masked_text[position:], False))
    if "".join(piece for piece, _ in parts) != text:
        return []
    return parts
