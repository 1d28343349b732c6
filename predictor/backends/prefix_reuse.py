"""Where a new request runs, and how much of its prompt it need not compute.

The llama.cpp engine keeps every finished request's KV cells in its sequence
(a *slot*), with the token ids those cells hold. A new request is placed by
comparing its prompt with every slot's tokens:

- **in place**: it runs on a free slot whose tokens start like its prompt (the
  next turn of a chat, the same system prompt); only the rest is computed;
- **copy**: another slot (free or running) holds a longer match, so its cells
  are copied into a free slot first. llama.cpp copies a whole stream between
  split KV streams (``llama_kv_cache::seq_cp`` at the pinned llama.cpp, "only
  supported for full KV buffers"), a memcpy of ``n_ctx_per_seq`` cells, so a
  copy is worth it only for a match at least ``COPY_MIN_TOKENS`` longer;
- **wait**: a running request is still prefilling a prompt that shares a long
  prefix with this one (a burst of requests with one system prompt), so this
  one waits until that prefix is computed and then copies it: one prefill
  serves them all.

The slot that gives up its cells is the least recently used free one, unless
its content is a prefix of the new prompt anyway. A running request's slot is
never touched. Pure logic, no llama.cpp: ``LlamaEngine`` applies the placement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from predictor.backends.base import PrefixSource

# A cross-stream copy moves n_ctx_per_seq cells whatever the match; computing
# fewer tokens than this is about as fast on a CPU (docs/benchmarks.md).
COPY_MIN_TOKENS = 32


def common_prefix_length(a: list[int], b: list[int], limit: int) -> int:
    """How many leading tokens ``a`` and ``b`` share, at most ``limit``."""
    limit = min(limit, len(a), len(b))
    if a[:limit] == b[:limit]:  # the common case (a chat's next turn) in one C-level compare
        return limit
    low, high = 0, limit  # a[:low] == b[:low] and a[:high] != b[:high]
    while high - low > 1:
        middle = (low + high) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle
    return low


@dataclass
class Slot:
    """One sequence of the context and what its KV cells hold."""

    seq_id: int
    # Token ids of the cells, by position: tokens[i] is at position i.
    tokens: list[int] = field(default_factory=list)
    # The leading tokens restored from the prefix cache volume and not recomputed since.
    from_disk: int = 0
    # Length of the prompt of the last request that ran here (0: none, or restored).
    prompt_length: int = 0
    last_used: int = 0
    # While a request runs here: the prompt it will have computed once prefilled.
    running_prompt: list[int] | None = None
    # A running request waiting to copy another slot's prefix is no source itself.
    waiting: bool = False

    @property
    def busy(self) -> bool:
        return self.running_prompt is not None

    def source_of(self, reuse: int, *, copied: bool) -> PrefixSource:
        """How to report ``reuse`` tokens taken from this slot."""
        if reuse <= self.from_disk:
            return "disk"
        return "copy" if copied else "memory"


@dataclass(frozen=True)
class Placement:
    """Where a request runs and how its prompt's prefix gets there."""

    seq_id: int
    # Prompt tokens that will not be computed (their KV is there or copied in).
    reuse: int
    # Copy this slot's cells in first (None: in place, nothing to copy).
    copy_from: int | None = None
    # Copy only once that running slot has computed ``reuse`` tokens.
    wait: bool = False
    source: PrefixSource | None = None
    # The slot whose own prompt shares ``reuse`` tokens with this one and then
    # differs: a prefix two different requests had in common (see engine: saved).
    shared_with: int | None = None


def place(prompt: list[int], slots: list[Slot], *, reuse_enabled: bool) -> Placement | None:
    """The placement for ``prompt``, or None when every slot is busy."""
    free = _keeping_runs_together([slot for slot in slots if not slot.busy], slots)
    if not free:
        return None
    if not reuse_enabled:
        return Placement(_victim(free).seq_id, 0)
    # At least the last prompt token is computed: its logits give the first answer token.
    limit = len(prompt) - 1
    have = {slot.seq_id: common_prefix_length(slot.tokens, prompt, limit) for slot in slots}
    by_id = {slot.seq_id: slot for slot in slots}

    def preference(slot: Slot) -> tuple[int, bool, int]:
        return have[slot.seq_id], not slot.busy, slot.last_used

    home = max(free, key=preference)  # the best free slot to run on in place
    best = max(slots, key=preference)  # the best cells anywhere, now
    future = _best_future(prompt, slots, limit)
    if future is not None:
        source, length = future
        if length - have[best.seq_id] >= COPY_MIN_TOKENS:
            return _copy(by_id[source], length, _victim(free), wait=True)
    if have[best.seq_id] - have[home.seq_id] >= COPY_MIN_TOKENS:
        return _copy(best, have[best.seq_id], _victim(free, keep=best), wait=False)
    reuse = have[home.seq_id]
    # Running in place would throw away the home slot's later tokens (another
    # conversation's turn, say). When they are worth more than a copy, and an
    # older or empty slot is free, the least recently used content is evicted
    # instead: the prefix is copied there, or, when it is too short to be worth
    # a copy, the request simply runs there.
    lost = len(home.tokens) - reuse
    if lost >= COPY_MIN_TOKENS:
        victim = _victim(free, keep=home)
        if victim is not home and (not victim.tokens or victim.last_used < home.last_used):
            if reuse >= COPY_MIN_TOKENS:
                return _copy(home, reuse, victim, wait=False)
            home, reuse = victim, have[victim.seq_id]
    if reuse == 0:
        home = _victim(free)
    return Placement(
        home.seq_id,
        reuse,
        source=home.source_of(reuse, copied=False) if reuse else None,
        shared_with=home.seq_id if _diverges(home, reuse) else None,
    )


def _copy(source: Slot, reuse: int, dest: Slot, *, wait: bool) -> Placement:
    if dest is source:
        return Placement(
            dest.seq_id,
            reuse,
            source=source.source_of(reuse, copied=False),
            shared_with=dest.seq_id if _diverges(source, reuse) else None,
        )
    return Placement(
        dest.seq_id,
        reuse,
        copy_from=source.seq_id,
        wait=wait,
        source=source.source_of(reuse, copied=True),
        shared_with=source.seq_id if _diverges(source, reuse) else None,
    )


def _diverges(source: Slot, reuse: int) -> bool:
    """True when the shared tokens end inside the source request's own prompt:
    two different prompts share them (a system prompt), rather than one chat
    continuing its earlier turn."""
    if reuse == 0:
        return False
    own_prompt = (
        len(source.running_prompt) if source.running_prompt is not None else source.prompt_length
    )
    return reuse < own_prompt


def _best_future(prompt: list[int], slots: list[Slot], limit: int) -> tuple[int, int] | None:
    """The running slot whose prompt, once prefilled, shares most with ``prompt``."""
    best: tuple[int, int] | None = None
    for slot in slots:
        if slot.running_prompt is None or slot.waiting:
            continue
        length = common_prefix_length(slot.running_prompt, prompt, limit)
        if best is None or length > best[1]:
            best = (slot.seq_id, length)
    return best


def _keeping_runs_together(free: list[Slot], slots: list[Slot]) -> list[Slot]:
    """The free slots that leave the running sequence ids in the fewest consecutive runs.

    With split KV streams llama.cpp puts sequences in one ubatch only while
    their ids increase by one (``llama_batch_allocr::split_equal`` with
    ``sequential``, at the pinned llama.cpp): running ids {0, 1, 3} take two
    passes over the weights a step where {0, 1, 2} take one.
    """
    busy = {slot.seq_id for slot in slots if slot.busy}

    def runs(ids: set[int]) -> int:
        return sum(1 for seq_id in ids if seq_id - 1 not in ids)

    fewest = min((runs(busy | {slot.seq_id}) for slot in free), default=0)
    return [slot for slot in free if runs(busy | {slot.seq_id}) == fewest]


def _victim(free: list[Slot], keep: Slot | None = None) -> Slot:
    """The free slot whose cells are given up: empty first, then least recently used."""
    candidates = [slot for slot in free if slot is not keep] or free
    return min(candidates, key=lambda slot: (bool(slot.tokens), slot.last_used))
