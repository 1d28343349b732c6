"""Counting tokens in the model's own vocabulary, with the vocabulary alone loaded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def token_counter(model: Path) -> Iterator[Callable[[str], int]]:
    """A function that counts the tokens of a text (no BOS, special tokens as text)."""
    import llama_cpp

    vocab = llama_cpp.Llama(str(model), vocab_only=True, verbose=False)
    try:
        yield lambda text: len(vocab.tokenize(text.encode(), add_bos=False, special=False))
    finally:
        vocab.close()
