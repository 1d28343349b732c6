"""Where a request runs and what it reuses: the placement policy, without llama.cpp."""

from __future__ import annotations

import pytest

from predictor.backends.prefix_reuse import (
    COPY_MIN_TOKENS,
    Slot,
    common_prefix_length,
    place,
)

SYSTEM = list(range(1000, 1200))  # a 200-token shared system prompt


def conversation(tag: int, length: int = 40) -> list[int]:
    return SYSTEM + [tag] * length


def slots(count: int = 4) -> list[Slot]:
    return [Slot(seq_id) for seq_id in range(count)]


def finished(slot: Slot, prompt: list[int], generated: int = 0, *, at: int) -> Slot:
    """The slot as a request with ``prompt`` leaves it: its cells, its recency."""
    slot.tokens = prompt + [7] * generated
    slot.prompt_length = len(prompt)
    slot.last_used = at
    return slot


def running(slot: Slot, prompt: list[int], computed: int) -> Slot:
    slot.running_prompt = prompt
    slot.tokens = prompt[:computed]
    return slot


@pytest.mark.parametrize(
    ("a", "b", "limit", "expected"),
    [
        ([1, 2, 3], [1, 2, 3], 10, 3),
        ([1, 2, 3], [1, 2, 4], 10, 2),
        ([1, 2, 3], [9, 2, 3], 10, 0),
        ([1, 2, 3, 4, 5], [1, 2, 3], 10, 3),
        ([1, 2, 3], [1, 2, 3], 2, 2),
        ([], [1], 10, 0),
        (list(range(5000)), [*range(4999), -1], 10_000, 4999),
    ],
)
def test_common_prefix_length(a: list[int], b: list[int], limit: int, expected: int) -> None:
    assert common_prefix_length(a, b, limit) == expected


def test_empty_engine_runs_on_the_first_sequence_and_reuses_nothing() -> None:
    placement = place(conversation(1), slots(), reuse_enabled=True)
    assert placement is not None
    assert (placement.seq_id, placement.reuse, placement.copy_from) == (0, 0, None)
    assert placement.source is None


def test_next_turn_runs_in_place_on_its_own_conversation() -> None:
    table = slots()
    turn_one = conversation(1)
    finished(table[2], turn_one, generated=10, at=5)
    turn_two = turn_one + [7] * 10 + [8] * 20  # the answer, then the next user message
    placement = place(turn_two, table, reuse_enabled=True)
    assert placement is not None
    assert placement.seq_id == 2 and placement.copy_from is None
    assert placement.reuse == len(turn_one) + 10
    assert placement.source == "memory"
    # A chat continuing its own turn is no prefix shared between two prompts.
    assert placement.shared_with is None


def test_another_conversation_copies_the_system_prompt_into_an_empty_sequence() -> None:
    table = slots()
    finished(table[0], conversation(1), generated=10, at=5)
    placement = place(conversation(2), table, reuse_enabled=True)
    assert placement is not None
    # The first conversation's cells stay for its next turn.
    assert placement.seq_id == 1 and placement.copy_from == 0
    assert placement.reuse == len(SYSTEM)
    assert placement.source == "copy"
    assert placement.shared_with == 0  # two different prompts shared it: worth saving


def test_burst_waits_for_the_running_prefill_of_a_shared_prefix() -> None:
    table = slots()
    running(table[0], conversation(1), computed=64)
    placement = place(conversation(2), table, reuse_enabled=True)
    assert placement is not None
    assert placement.wait and placement.copy_from == 0
    assert placement.seq_id == 1
    assert placement.reuse == len(SYSTEM)


def test_a_waiting_request_is_not_a_source_for_another() -> None:
    table = slots()
    running(table[0], conversation(1), computed=10)
    waiter = running(table[1], conversation(2), computed=0)
    waiter.waiting = True
    placement = place(conversation(3), table, reuse_enabled=True)
    assert placement is not None and placement.copy_from == 0


def test_a_short_match_is_not_copied_and_does_not_evict_a_conversation() -> None:
    table = slots()
    finished(table[0], [5] * (COPY_MIN_TOKENS - 1) + [1] * 50, at=3)
    placement = place([5] * (COPY_MIN_TOKENS - 1) + [2] * 50, table, reuse_enabled=True)
    assert placement is not None
    # Not worth a copy, and not worth the other conversation's cells: an empty slot.
    assert (placement.seq_id, placement.reuse, placement.copy_from) == (1, 0, None)


def test_a_short_match_runs_in_place_when_the_slot_is_the_least_recently_used() -> None:
    table = slots(2)
    finished(table[0], [5] * (COPY_MIN_TOKENS - 1) + [1] * 50, at=3)
    finished(table[1], [9] * 80, at=7)
    placement = place([5] * (COPY_MIN_TOKENS - 1) + [2] * 50, table, reuse_enabled=True)
    assert placement is not None
    assert (placement.seq_id, placement.reuse, placement.copy_from) == (
        0,
        COPY_MIN_TOKENS - 1,
        None,
    )


def test_least_recently_used_content_is_evicted_never_a_running_request() -> None:
    table = slots(3)
    finished(table[0], [1] * 100, at=9)
    finished(table[1], [2] * 100, at=4)  # the oldest
    running(table[2], [3] * 100, computed=100)
    placement = place([4] * 100, table, reuse_enabled=True)
    assert placement is not None and placement.seq_id == 1


def test_every_sequence_running_means_no_placement() -> None:
    table = slots(2)
    running(table[0], [1] * 10, computed=10)
    running(table[1], [2] * 10, computed=10)
    assert place([3] * 10, table, reuse_enabled=True) is None


def test_the_last_prompt_token_is_always_computed() -> None:
    table = slots()
    prompt = conversation(1)
    finished(table[0], prompt, generated=5, at=1)
    placement = place(prompt, table, reuse_enabled=True)
    assert placement is not None and placement.reuse == len(prompt) - 1


def test_reuse_off_never_reuses() -> None:
    table = slots()
    finished(table[0], conversation(1), at=1)
    placement = place([*conversation(1), 9], table, reuse_enabled=False)
    assert placement is not None and placement.reuse == 0 and placement.copy_from is None


def test_running_ids_stay_consecutive() -> None:
    table = slots()
    running(table[0], [1] * 50, computed=50)
    running(table[1], [2] * 50, computed=50)
    match = conversation(3)
    finished(table[3], match, at=2)
    placement = place(match + [9] * 10, table, reuse_enabled=True)
    assert placement is not None
    # Running on 3 would split the running ids {0, 1, 3} into two ubatches: copy to 2.
    assert placement.seq_id == 2 and placement.copy_from == 3


def test_prefix_restored_from_disk_is_reported_as_disk() -> None:
    table = slots()
    table[0].tokens = list(SYSTEM)
    table[0].from_disk = len(SYSTEM)
    placement = place(conversation(1), table, reuse_enabled=True)
    assert placement is not None
    assert placement.reuse == len(SYSTEM) and placement.source == "disk"
