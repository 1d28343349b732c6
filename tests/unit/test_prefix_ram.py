"""The host-memory tier of prefix reuse: what it keeps, finds and drops."""

from __future__ import annotations

from collections.abc import Callable

from predictor.backends.prefix_ram import RAM_MIN_TOKENS, HostPrefixCache

LONG = list(range(100, 100 + 2 * RAM_MIN_TOKENS))


def block_of(size: int) -> tuple[Callable[[], bytes], list[int]]:
    """A stand-in for reading a sequence's state out of llama.cpp, and its calls."""
    calls: list[int] = []

    def serialize() -> bytes:
        calls.append(size)
        return bytes(size)

    return serialize, calls


def test_short_prefixes_and_a_zero_budget_keep_nothing_and_read_nothing() -> None:
    serialize, calls = block_of(10)
    assert not HostPrefixCache(1000).offer(LONG[: RAM_MIN_TOKENS - 1], serialize)
    assert not HostPrefixCache(0).offer(LONG, serialize)
    assert calls == []  # llama.cpp's state is never read for an entry that is not kept


def test_the_longest_shared_prefix_is_found_within_the_limit() -> None:
    cache = HostPrefixCache(1000)
    other = [7] * RAM_MIN_TOKENS
    assert cache.offer(LONG, block_of(10)[0])
    assert cache.offer(other, block_of(10)[0])
    prompt = [*LONG[:90], 1, 2, 3]
    entry, length = cache.best(prompt, len(prompt) - 1) or (None, 0)
    assert entry is not None and entry.tokens == LONG and length == 90
    assert cache.best(prompt, 40) is not None and cache.best(prompt, 40)[1] == 40
    assert cache.best([5, 5, 5], 2) is None


def test_a_prefix_inside_a_kept_entry_is_not_kept_twice() -> None:
    cache = HostPrefixCache(1000)
    assert cache.offer(LONG, block_of(10)[0])
    serialize, calls = block_of(10)
    assert not cache.offer(LONG[:RAM_MIN_TOKENS], serialize)
    assert calls == [] and len(cache) == 1 and cache.bytes_used == 10


def test_a_longer_entry_replaces_the_entries_it_starts_with() -> None:
    cache = HostPrefixCache(1000)
    assert cache.offer(LONG[:RAM_MIN_TOKENS], block_of(10)[0])
    assert cache.offer(LONG, block_of(30)[0])
    assert len(cache) == 1 and cache.bytes_used == 30


def test_the_least_recently_used_entries_go_first_to_fit_the_budget() -> None:
    cache = HostPrefixCache(100)
    first, second, third = ([n] * RAM_MIN_TOKENS for n in (1, 2, 3))
    assert cache.offer(first, block_of(40)[0])
    assert cache.offer(second, block_of(40)[0])
    found = cache.best([*first, 9], RAM_MIN_TOKENS)
    assert found is not None
    cache.used(found[0])  # first is now the most recently used
    assert cache.offer(third, block_of(40)[0])
    assert cache.bytes_used == 80
    assert cache.best([*second, 9], RAM_MIN_TOKENS) is None
    assert cache.best([*first, 9], RAM_MIN_TOKENS) is not None


def test_an_entry_over_the_whole_budget_or_without_a_block_is_not_kept() -> None:
    cache = HostPrefixCache(100)
    assert not cache.offer(LONG, block_of(101)[0])
    assert not cache.offer(LONG, lambda: None)
    assert len(cache) == 0 and cache.bytes_used == 0


def test_a_discarded_entry_frees_its_bytes() -> None:
    cache = HostPrefixCache(100)
    cache.offer(LONG, block_of(40)[0])
    found = cache.best(LONG, len(LONG))
    assert found is not None
    cache.discard(found[0])
    assert len(cache) == 0 and cache.bytes_used == 0
