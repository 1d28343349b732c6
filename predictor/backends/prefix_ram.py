"""Evicted prefixes' KV state in host memory, within an explicit byte budget.

The llama.cpp engine reuses prefixes from the KV cells of its sequences, and a
sequence's cells are given up when a new request needs the slot. Before they
are overwritten, the engine offers them here (llama.cpp's sequence state, the
same stream block the prefix store saves), and a later request whose prompt
starts with them gets them back with one ``llama_state_seq_set_data`` instead
of a prefill: a chat whose slot was taken by other users, or one of more
system prompts than there are sequences. llama-server keeps prompts in host
RAM the same way (``--cache-ram``, ``cache_ram_mib = 8192`` in
``common/common.h`` of the llama.cpp pinned by llama-cpp-python 0.3.36); here
the budget is ``--prefix_cache_ram_bytes``, small by default and counted in the
pod's memory limit, so the scheduler sees it.

An entry holds a whole sequence, so entries that share a system prompt each
hold its cells: llama.cpp restores a sequence's state only into an emptied
sequence (``llama_kv_cache::state_read`` calls ``seq_rm(dest_seq_id, -1, -1)``
first), so a stored tail could not be laid on top of a shared prefix.

An entry is dropped when a longer one that starts with it arrives (restoring
the longer one and cutting it back gives the same cells), and the least
recently used entries are dropped to fit the budget. Pure bookkeeping: the
engine does the llama.cpp calls.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from predictor.backends.prefix_reuse import common_prefix_length

# Fewer tokens than this are not worth keeping: computing them is quick.
RAM_MIN_TOKENS = 64


@dataclass(frozen=True, eq=False)
class RamPrefix:
    tokens: list[int]
    block: bytes  # a single-stream KV block (``prefix_store.state_block``)


class HostPrefixCache:
    """Prefixes' KV blocks keyed by their token ids, least recently used first."""

    def __init__(self, max_bytes: int, on_bytes: Callable[[int], None] | None = None) -> None:
        """``on_bytes`` hears the bytes held after every change (a gauge)."""
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], RamPrefix] = OrderedDict()
        self.bytes_used = 0
        self._on_bytes = on_bytes or (lambda used: None)

    def __len__(self) -> int:
        return len(self._entries)

    def offer(self, tokens: list[int], serialize: Callable[[], bytes | None]) -> bool:
        """Keep ``tokens``' cells unless they are short, already kept or over budget.

        ``serialize`` is called only when the entry will be kept: reading a
        sequence's state out of llama.cpp is a copy of all its cells.
        """
        if self.max_bytes <= 0 or len(tokens) < RAM_MIN_TOKENS:
            return False
        key = tuple(tokens)
        for entry_key, entry in self._entries.items():
            if entry.tokens[: len(tokens)] == tokens:  # kept already, within a longer entry
                self._entries.move_to_end(entry_key)
                return False
        block = serialize()
        if block is None or len(block) > self.max_bytes:
            return False
        for shorter in [k for k in self._entries if key[: len(k)] == k]:
            self._drop(shorter)
        self._entries[key] = RamPrefix(list(tokens), block)
        self.bytes_used += len(block)
        while self.bytes_used > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._on_bytes(self.bytes_used)
        return True

    def best(self, prompt: list[int], limit: int) -> tuple[RamPrefix, int] | None:
        """The entry sharing the longest prefix with ``prompt`` (at most ``limit`` tokens)."""
        found: tuple[RamPrefix, int] | None = None
        for entry in self._entries.values():
            length = common_prefix_length(entry.tokens, prompt, limit)
            if length and (found is None or length > found[1]):
                found = (entry, length)
        return found

    def used(self, entry: RamPrefix) -> None:
        """Mark ``entry`` as just restored (most recently used)."""
        key = tuple(entry.tokens)
        if key in self._entries:
            self._entries.move_to_end(key)

    def discard(self, entry: RamPrefix) -> None:
        key = tuple(entry.tokens)
        if key in self._entries:
            self._drop(key)
            self._on_bytes(self.bytes_used)

    def _drop(self, key: tuple[int, ...]) -> None:
        self.bytes_used -= len(self._entries.pop(key).block)
