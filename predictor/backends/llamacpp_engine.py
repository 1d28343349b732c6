"""llama.cpp through its C API: one context, several sequences, one batched decode loop.

Concurrent requests decode together: each holds a sequence id and its own KV
cells in one ``llama_context`` (``n_seq_max`` sequences, the KV cache split
evenly between them, so one long conversation can never starve another of
cells). Every step builds one ``llama_batch`` with the next token of every
decoding sequence plus a chunk of a newcomer's prompt, runs one
``llama_decode`` and samples each sequence's next token with its own C-side
sampler chain (greedy requests take the argmax of their logits row).
Requests join and leave between steps.

No per-token work happens in Python beyond filling the batch and turning the
sampled token into bytes: logits are never copied (``llama_sampler_sample``
reads them in place, and greedy decoding takes the argmax of a numpy view of
llama.cpp's logits row), unlike ``Llama.generate``, which copies every
vocabulary logit into numpy per token.

Finished requests leave their KV cells behind, and a new request starts from
the longest prefix of its prompt that some sequence holds (``prefix_reuse``
decides where it runs and what it copies; ``prefix_store`` keeps shared
prefixes on a volume across restarts). Each sequence's cells are tracked with
the token ids they hold, so what is reused is exactly what was computed.

One thread owns the context (llama.cpp contexts are not thread-safe); other
threads only tokenize, which reads the immutable vocabulary.
"""

from __future__ import annotations

import ctypes
import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from predictor.backends.base import (
    BackendDeadError,
    BackendLoadError,
    FinishReason,
    PrefixSource,
    SamplingOptions,
)
from predictor.backends.prefix_ram import RAM_MIN_TOKENS, HostPrefixCache
from predictor.backends.prefix_reuse import (
    COPY_MIN_TOKENS,
    Placement,
    Slot,
    common_prefix_length,
    place,
)
from predictor.backends.prefix_store import (
    REJECTED,
    RESTORED,
    PrefixStore,
    state_block,
    state_payload,
)

logger = logging.getLogger(__name__)

# While other sequences are decoding, a newcomer's prompt goes in chunks of at
# most this many tokens, so their next token waits for one chunk, not for the
# whole prompt. Alone, a prompt goes in chunks of n_batch (faster per token).
PROMPT_CHUNK_WHILE_DECODING = 128
# Shared prefixes shorter than this are not worth a file on the volume.
PERSIST_MIN_TOKENS = 64

_backend_ready = False
_backend_lock = threading.Lock()


def llama_cpp_library() -> Any:
    """Import llama_cpp once, quiet its C logging and initialise the ggml backend."""
    global _backend_ready
    try:
        import llama_cpp
    except ImportError as exc:
        raise BackendLoadError(
            "llama.cpp backend requested but llama-cpp-python is not installed: "
            "pip install 'kzero[cpu]'"
        ) from exc
    with _backend_lock:
        if not _backend_ready:
            # llama-cpp-python routes llama.cpp's log through this logger; the
            # load log is hundreds of lines per start.
            logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
            llama_cpp.llama_backend_init()
            _backend_ready = True
    return llama_cpp


@dataclass(frozen=True)
class EngineConfig:
    n_parallel: int
    n_ctx_per_seq: int
    n_threads: int
    n_batch: int
    # Off unless asked: see _load. With it on, prefixes are not reused.
    flash_attn: bool = False
    # Keep finished requests' KV cells and reuse matching prompt prefixes.
    prefix_reuse: bool = True
    # Host memory for cells given up by their sequence (prefix_ram); 0: none.
    prefix_ram_bytes: int = 0


@dataclass(frozen=True)
class KVSettings:
    """What this context computes KV with: the engine's share of a ``PrefixKey``."""

    system_info: str
    type_k: int
    type_v: int
    flash_attn_type: int


# Opens the prefix store once the context's KV settings are known (the rest of
# the key, the model's digest, is computed while the model loads).
# None: persistence is unavailable (logged by whoever decided).
OpenPrefixStore = Callable[[KVSettings], PrefixStore | None]


class Emit(Protocol):
    """How the decode loop talks to one request; the backend's job implements it.

    Called on the decode thread, so implementations must only hand data over.
    """

    def started(self) -> None:
        """The request got a sequence: it left the queue."""

    def reused(self, tokens: int, source: PrefixSource) -> None:
        """``tokens`` of the prompt were not computed: their KV came from ``source``."""

    def token(self, piece: bytes, finish_reason: FinishReason | None) -> bool:
        """One sampled token's bytes; True when the request is done (a stop string, say)."""

    def end_of_generation(self) -> None:
        """The model ended the answer: the request is done."""

    def failed(self, error: BaseException) -> None:
        """The engine failed; no more tokens will come."""

    def cancelled(self) -> bool:
        """True once the request was aborted: its sequence is freed before the next step."""


@dataclass(eq=False)
class _Sequence:
    """One request's place in the context."""

    slot: Slot
    prompt: list[int]
    options: SamplingOptions
    emit: Emit
    sampler: Any | None  # None: greedy (temperature 0), see LlamaEngine._greedy
    placement: Placement
    prefilled: int = 0
    n_past: int = 0
    last_token: int = -1
    generated: int = 0
    logits_index: int = -1
    # Waiting for this running request to compute the prefix it will copy.
    waiting_for: _Sequence | None = None
    # Save the first this-many cells to the prefix store once they are in place.
    snapshot_length: int = 0

    @property
    def seq_id(self) -> int:
        return self.slot.seq_id


@dataclass
class _Pending:
    prompt: list[int]
    options: SamplingOptions
    emit: Emit


class LlamaEngine:
    """A loaded GGUF model and its batched decode loop."""

    def __init__(
        self,
        model_path: Path,
        config: EngineConfig,
        *,
        open_prefix_store: OpenPrefixStore | None = None,
        on_ram_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self._lib = llama_cpp_library()
        self.config = config
        self._model: Any = None
        self._ctx: Any = None
        self._batch: Any = None
        self._pieces: dict[int, bytes] = {}
        self._lock = threading.Condition()
        self._pending: deque[_Pending] = deque()
        self._slots = [Slot(seq_id) for seq_id in range(config.n_parallel)]
        self._clock = 0  # ticks on every release: the slots' recency for eviction
        self._active: list[_Sequence] = []
        self._stopping = False
        self.failure: BaseException | None = None
        self._store: PrefixStore | None = None
        self._load(model_path)
        self.prefix_reuse = config.prefix_reuse and self._can_reuse_prefixes()
        self._ram = HostPrefixCache(
            config.prefix_ram_bytes if self.prefix_reuse else 0, on_ram_bytes
        )
        # Stream copies queued in llama.cpp, (destination, source) sequence ids:
        # the next llama_decode runs them first. Until then the destinations'
        # buffers do not hold their cells' data (llama-kv-cache.cpp at the
        # pinned llama.cpp: seq_cp copies the cell metadata and enqueues the
        # buffer copy, which update() performs before the next graph).
        self._queued_copies: list[tuple[int, int]] = []
        if self.prefix_reuse and open_prefix_store is not None:
            self._store = open_prefix_store(self._kv_settings)
            if self._store is not None:
                self._restore_prefixes(self._store)
        self._thread = threading.Thread(target=self._loop, name="llamacpp-decode", daemon=True)
        self._thread.start()

    # ---- loading -------------------------------------------------------

    def _load(self, model_path: Path) -> None:
        lib = self._lib
        model_params = lib.llama_model_default_params()
        model_params.use_mmap = True
        self._model = lib.llama_model_load_from_file(str(model_path).encode(), model_params)
        if not self._model:
            raise BackendLoadError(f"llama.cpp failed to load {model_path}")
        self._vocab = lib.llama_model_get_vocab(self._model)
        self._n_vocab = int(lib.llama_vocab_n_tokens(self._vocab))
        config = self.config
        params = lib.llama_context_default_params()
        params.n_ctx = config.n_parallel * config.n_ctx_per_seq
        params.n_batch = config.n_batch
        params.n_ubatch = min(config.n_batch, 512)
        params.n_seq_max = config.n_parallel
        params.n_threads = config.n_threads
        params.n_threads_batch = config.n_threads
        # Split, not unified: each sequence owns n_ctx_per_seq cells, so a
        # request that passed the context check can always be decoded, and
        # attention reads only its own sequence's cells.
        params.kv_unified = False
        # Flash attention off by default. On the CPU, llama.cpp picks its flash-attention
        # kernel by the number of query rows per sequence in a ubatch: a tiled
        # f32 kernel from 64 rows, below that a per-row kernel that rounds Q to
        # f16 (ggml-cpu/ops.cpp, flash_attn_ext: `neq1 >= Q_TILE_SZ`,
        # GGML_FA_TILE_Q = 64). So a token's KV depends on how its prompt was
        # chunked, and reused cells (computed in other chunks, or decoded one
        # at a time) differ from a fresh prefill's by up to 0.6 in the logits:
        # enough to flip a greedy answer. Without it every row is computed
        # alike whatever the batch (measured: logits bit-identical for any
        # split), and decoding at a 1,000-token context was faster here (15.5
        # against 23.1 ms a step, one sequence), prefill 10% slower
        # (docs/benchmarks.md). With it on (asked for), prefixes are not reused.
        params.flash_attn_type = (
            lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if config.flash_attn
            else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.no_perf = True
        self._ctx = lib.llama_init_from_model(self._model, params)
        if not self._ctx:
            lib.llama_model_free(self._model)
            self._model = None
            raise BackendLoadError(
                f"llama.cpp could not create a context of {params.n_ctx} tokens for {model_path}"
            )
        self._memory = lib.llama_get_memory(self._ctx)
        self._batch = lib.llama_batch_init(config.n_batch, 0, 1)
        self._kv_settings = KVSettings(
            system_info=lib.llama_print_system_info().decode(errors="replace").strip(),
            type_k=int(params.type_k),
            type_v=int(params.type_v),
            flash_attn_type=int(params.flash_attn_type),
        )

    def _can_reuse_prefixes(self) -> bool:
        """Prefix reuse cuts a sequence back to its matching prefix: recurrent and
        hybrid models cannot drop part of a sequence, and a sliding-window cache
        has forgotten the start of a long one. With flash attention on, reused KV
        is not what a fresh prefill computes (see _load)."""
        lib = self._lib
        model = self._model
        if self.config.flash_attn:
            logger.info("prefix reuse off: flash attention is on")
            return False
        if lib.llama_model_is_recurrent(model) or lib.llama_model_is_hybrid(model):
            logger.info("prefix reuse off: this model's memory is recurrent")
            return False
        if lib.llama_model_n_swa(model) > 0:
            logger.info("prefix reuse off: this model uses sliding-window attention")
            return False
        return True

    def _restore_prefixes(self, store: PrefixStore) -> None:
        """Load the most recently used saved prefixes into empty sequences (before ready)."""
        for slot, prefix in zip(self._slots, store.load_recent(len(self._slots)), strict=False):
            if len(prefix.tokens) >= self.n_ctx_per_seq:
                logger.warning(
                    "prefix cache: %s holds %d tokens, more than this context's %d per sequence",
                    prefix.path,
                    len(prefix.tokens),
                    self.n_ctx_per_seq,
                )
                store.report(REJECTED)
                continue
            if not self._load_block(slot.seq_id, prefix.block, len(prefix.tokens)):
                logger.warning("prefix cache: llama.cpp refused %s", prefix.path)
                store.report(REJECTED)
                continue
            slot.tokens = list(prefix.tokens)
            slot.from_disk = len(prefix.tokens)
            store.touch(prefix)
            store.report(RESTORED)
            logger.info("prefix cache: restored a %d-token prefix", len(prefix.tokens))

    def _load_block(self, seq_id: int, block: bytes, n_tokens: int) -> bool:
        """Put a saved stream block into the (empty) sequence; False when llama.cpp
        refused it (its own checks: layer count, types, sizes), leaving it empty."""
        lib = self._lib
        payload = state_payload(block, self.config.n_parallel)
        buffer = (ctypes.c_uint8 * len(payload)).from_buffer_copy(payload)
        read = lib.llama_state_seq_set_data(self._ctx, buffer, len(payload), seq_id)
        positions = int(lib.llama_memory_seq_pos_max(self._memory, seq_id)) + 1
        if read == len(payload) and positions == n_tokens:
            return True
        lib.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
        return False

    def _serialize(self, seq_id: int) -> bytes | None:
        """The sequence's cells as a single-stream block (None: this model's KV has none)."""
        lib = self._lib
        size = int(lib.llama_state_seq_get_size(self._ctx, seq_id))
        buffer = (ctypes.c_uint8 * size)()
        written = int(lib.llama_state_seq_get_data(self._ctx, buffer, size, seq_id))
        # A view, not a copy: the block is copied once, out of it.
        return state_block(memoryview(buffer)[:written], seq_id) if written else None

    @property
    def n_ctx_per_seq(self) -> int:
        return int(self._lib.llama_n_ctx_seq(self._ctx))

    @property
    def bos(self) -> int:
        return int(self._lib.llama_vocab_bos(self._vocab))

    @property
    def eos(self) -> int:
        return int(self._lib.llama_vocab_eos(self._vocab))

    # ---- vocabulary (any thread) ---------------------------------------

    def tokenize(self, text: bytes, *, add_special: bool, parse_special: bool) -> list[int]:
        lib = self._lib
        capacity = len(text) + 8
        tokens = (lib.llama_token * capacity)()
        count = lib.llama_tokenize(
            self._vocab, text, len(text), tokens, capacity, add_special, parse_special
        )
        if count < 0:  # the buffer was too small: -count is the size needed
            capacity = -count
            tokens = (lib.llama_token * capacity)()
            count = lib.llama_tokenize(
                self._vocab, text, len(text), tokens, capacity, add_special, parse_special
            )
        return list(tokens[:count])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token, as streamed (no leading-space stripping)."""
        if not special and token in self._pieces:
            return self._pieces[token]
        buffer = ctypes.create_string_buffer(64)
        size = self._lib.llama_token_to_piece(self._vocab, token, buffer, 64, 0, special)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = self._lib.llama_token_to_piece(self._vocab, token, buffer, -size, 0, special)
        data = buffer.raw[:size]
        if not special:
            self._pieces[token] = data
        return data

    def is_end_of_generation(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    # ---- requests (any thread) -----------------------------------------

    def submit(self, prompt: list[int], options: SamplingOptions, emit: Emit) -> None:
        if not prompt:
            # llama_decode refuses an empty batch; that is this request's fault, not the engine's.
            emit.failed(ValueError("an empty prompt cannot be decoded"))
            return
        with self._lock:
            if self.failure is not None:
                emit.failed(BackendDeadError(f"llama.cpp failed earlier: {self.failure}"))
                return
            self._pending.append(_Pending(prompt, options, emit))
            self._lock.notify()

    def wake(self) -> None:
        """Make the loop look at cancellations now (a cancelled request may be idle-waiting)."""
        with self._lock:
            self._lock.notify()

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self._thread.join()
        if self._store is not None:
            self._store.close()  # queued prefix files are written before the process exits
        lib = self._lib
        for sequence in self._active:
            self._free_sampler(sequence)
        self._active.clear()
        if self._batch is not None:
            lib.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            lib.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            lib.llama_model_free(self._model)
            self._model = None

    # ---- the decode loop (its own thread) ------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._active and not self._pending:
                    self._lock.wait()
                if self._stopping:
                    return
            try:
                self._admit()
                self._drop_cancelled()
                if not self._active:
                    continue
                self._step()
            except Exception as exc:  # the context's state is unknown now: the engine is dead
                logger.exception("llama.cpp decode failed")
                self._fail(exc)

    def _admit(self) -> None:
        """Place waiting requests on free sequences, in arrival order.

        Only taking a request off the queue holds the lock: bringing its prefix
        in (a host-memory read-out or restore, tens of milliseconds) must not
        keep ``submit`` waiting on the event loop. The slots belong to this
        thread alone.
        """
        while (admitted := self._next_placement()) is not None:
            request, placement = admitted
            slot = self._slots[placement.seq_id]
            slot.running_prompt = request.prompt
            slot.waiting = placement.wait
            sequence = _Sequence(
                slot=slot,
                prompt=request.prompt,
                options=request.options,
                emit=request.emit,
                sampler=self._new_sampler(request.options),
                placement=placement,
            )
            self._active.append(sequence)
            # Now, before the next placement: it reads this slot's tokens, and
            # a request placed in place has just cut them back.
            if not self._restore_from_ram(sequence):
                self._start(sequence)
            request.emit.started()

    def _next_placement(self) -> tuple[_Pending, Placement] | None:
        """The first waiting request that is still wanted, with its placement; None
        when none waits or every sequence is running."""
        with self._lock:
            while self._pending:
                request = self._pending[0]
                if request.emit.cancelled():
                    self._pending.popleft()
                    continue
                placement = place(request.prompt, self._slots, reuse_enabled=self.prefix_reuse)
                if placement is None:
                    return None
                self._pending.popleft()
                return request, placement
        return None

    def _start(self, sequence: _Sequence) -> None:
        """Bring the placed request's prefix into its sequence, or arrange to wait for it."""
        placement = sequence.placement
        if placement.wait and placement.copy_from is not None:
            source = self._running_on(placement.copy_from)
            if source is not None:
                sequence.waiting_for = source
                return
        copy_from = None if placement.copy_from is None else self._slots[placement.copy_from]
        self._take_prefix(sequence, copy_from, placement.reuse)

    def _restore_from_ram(self, sequence: _Sequence) -> bool:
        """Start the request from host memory when that holds a longer prefix than
        the slots; False when it does not (the placement stands)."""
        slot = sequence.slot
        prompt = sequence.prompt
        found = self._ram.best(prompt, len(prompt) - 1) if len(self._ram) else None
        if found is None or self._in_queued_copy(slot.seq_id):
            return False
        entry, length = found
        if length - sequence.placement.reuse < COPY_MIN_TOKENS:
            return False
        lib = self._lib
        self._offer_to_ram(slot, 0)
        lib.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
        slot.tokens, slot.from_disk, slot.waiting = [], 0, False
        if not self._load_block(slot.seq_id, entry.block, len(entry.tokens)):
            logger.warning("prefix cache: llama.cpp refused a %d-token prefix", len(entry.tokens))
            self._ram.discard(entry)
            self._take_prefix(sequence, None, 0)
            return True
        lib.llama_memory_seq_rm(self._memory, slot.seq_id, length, -1)
        slot.tokens = entry.tokens[:length]
        self._ram.used(entry)
        sequence.prefilled = sequence.n_past = length
        sequence.emit.reused(length, "ram")
        return True

    def _offer_to_ram(self, slot: Slot, keep: int) -> None:
        """The slot's cells past ``keep`` are about to be overwritten: keep them in
        host memory when worth it."""
        if self._ram.max_bytes <= 0 or len(slot.tokens) - keep < RAM_MIN_TOKENS:
            return
        if self._in_queued_copy(slot.seq_id):
            return  # its buffer does not hold its cells' data yet
        self._ram.offer(slot.tokens, lambda: self._serialize(slot.seq_id))

    def _in_queued_copy(self, seq_id: int) -> bool:
        """True while a queued copy writes this sequence or reads it (restoring into
        a source would change what the copy reads)."""
        return any(seq_id in copy for copy in self._queued_copies)

    def _copy_queued(self, sequence: _Sequence) -> bool:
        return any(destination == sequence.seq_id for destination, _ in self._queued_copies)

    def _running_on(self, seq_id: int) -> _Sequence | None:
        return next((s for s in self._active if s.seq_id == seq_id), None)

    def _take_prefix(self, sequence: _Sequence, source: Slot | None, reuse: int) -> None:
        """Make the sequence's cells hold exactly the first ``reuse`` prompt tokens:
        cut its own cells back (``source`` None or its own slot) or copy ``source``'s."""
        lib = self._lib
        slot = sequence.slot
        copied = source is not None and source is not slot
        if copied:
            assert source is not None
            self._offer_to_ram(slot, 0)
            # Across split streams llama.cpp copies the whole stream; the copy
            # itself runs at the start of the next llama_decode, before that
            # decode writes any cell.
            lib.llama_memory_seq_cp(self._memory, source.seq_id, slot.seq_id, -1, -1)
            self._queued_copies.append((slot.seq_id, source.seq_id))
            slot.tokens = source.tokens[:reuse]
            slot.from_disk = min(source.from_disk, reuse)
        else:
            self._offer_to_ram(slot, reuse)
            del slot.tokens[reuse:]
            slot.from_disk = min(slot.from_disk, reuse)
        lib.llama_memory_seq_rm(self._memory, slot.seq_id, reuse, -1)
        slot.waiting = False
        sequence.waiting_for = None
        sequence.prefilled = sequence.n_past = reuse
        if reuse == 0:
            return
        donor = source if source is not None else slot
        sequence.emit.reused(reuse, donor.source_of(reuse, copied=copied))
        shared = sequence.placement.shared_with is not None and reuse >= PERSIST_MIN_TOKENS
        if shared and self._store is not None and self._store.wants(sequence.prompt[:reuse]):
            sequence.snapshot_length = reuse

    def _resolve_waits(self) -> None:
        """Copy the prefix a waiting request waits for, once computed (or once it never will be)."""
        for sequence in self._active:
            source = sequence.waiting_for
            if source is None:
                continue
            wanted = sequence.placement.reuse
            ready = common_prefix_length(source.slot.tokens, sequence.prompt, wanted)
            if ready >= wanted:
                self._take_prefix(sequence, source.slot, wanted)
            elif source not in self._active:
                # It left before computing all of it: take what there is, if worth a copy.
                if ready >= COPY_MIN_TOKENS:
                    self._take_prefix(sequence, source.slot, ready)
                else:
                    self._take_prefix(sequence, None, 0)

    def _take_snapshots(self) -> None:
        """Save shared prefixes whose cells are in place (a queued copy has run)."""
        assert self._store is not None
        for sequence in self._active:
            length = sequence.snapshot_length
            if not length or self._copy_queued(sequence) or sequence.prefilled != length:
                continue
            sequence.snapshot_length = 0
            block = self._serialize(sequence.seq_id)
            if block is None:
                logger.info(
                    "prefix cache: this model's KV state has no single-stream form; not saved"
                )
                continue
            self._store.save(sequence.prompt[:length], block)

    def _new_sampler(self, options: SamplingOptions) -> Any | None:
        if options.temperature == 0.0:
            return None  # greedy: _greedy needs no sampler state
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        # OpenAI semantics: only top_p and temperature shape the distribution
        # (no top_k, min_p or typical sampling), in llama.cpp's usual order.
        if options.top_p < 1.0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(options.top_p, 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(options.temperature))
        seed = options.seed if options.seed is not None else random.getrandbits(32)
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def _release(self, sequence: _Sequence) -> None:
        """The request is over: its sequence's cells stay, for the next matching prompt."""
        slot = sequence.slot
        if not self.prefix_reuse:
            self._lib.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
            slot.tokens.clear()
        self._free_sampler(sequence)
        self._active.remove(sequence)
        self._clock += 1
        with self._lock:
            slot.running_prompt = None
            slot.waiting = False
            slot.prompt_length = len(sequence.prompt)
            slot.last_used = self._clock

    def _free_sampler(self, sequence: _Sequence) -> None:
        if sequence.sampler is not None:
            self._lib.llama_sampler_free(sequence.sampler)
            sequence.sampler = None

    def _drop_cancelled(self) -> None:
        for sequence in [s for s in self._active if s.emit.cancelled()]:
            self._release(sequence)

    def _step(self) -> None:
        """One llama_decode over every active sequence; then sample and deliver."""
        self._resolve_waits()
        if self._store is not None:
            self._run_queued_copies()
            self._take_snapshots()
        batch = self._batch
        count = 0
        # In ascending sequence id: llama.cpp reuses the previous step's compute
        # graph only when the batch has the same layout, and a batch whose ids
        # come in completion order (shuffled) rebuilds it every step: measured
        # 1.4x slower at 8 sequences (docs/benchmarks.md).
        decoding = sorted(
            (s for s in self._active if s.prefilled == len(s.prompt)), key=lambda s: s.seq_id
        )
        for sequence in decoding:
            self._add(batch, count, sequence.last_token, sequence.n_past, sequence.seq_id, True)
            sequence.slot.tokens.append(sequence.last_token)
            sequence.n_past += 1
            sequence.logits_index = count
            count += 1
        budget = self.config.n_batch - count
        if decoding:
            budget = min(budget, PROMPT_CHUNK_WHILE_DECODING)
        for sequence in self._prefilling(count):
            if budget <= 0:
                break
            take = min(budget, len(sequence.prompt) - sequence.prefilled)
            start = sequence.prefilled
            for offset in range(take):
                position = start + offset
                last = position == len(sequence.prompt) - 1
                self._add(batch, count, sequence.prompt[position], position, sequence.seq_id, last)
                if last:
                    sequence.logits_index = count
                count += 1
            sequence.slot.tokens += sequence.prompt[start : start + take]
            sequence.prefilled += take
            sequence.n_past = sequence.prefilled
            budget -= take
        if count == 0:
            return  # every request is waiting for another's prefix
        batch.n_tokens = count
        status = self._lib.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")
        self._queued_copies.clear()  # this decode ran them first
        for sequence in list(self._active):
            if sequence.logits_index < 0:
                continue
            index, sequence.logits_index = sequence.logits_index, -1
            if sequence.sampler is None:
                token = self._greedy(index)
            else:
                token = self._lib.llama_sampler_sample(sequence.sampler, self._ctx, index)
            if self._deliver(sequence, token):
                self._release(sequence)

    def _prefilling(self, decoding: int) -> list[_Sequence]:
        """Requests with prompt left to compute this step, in arrival order.

        One whose shared prefix is still being copied in waits a step, so that
        its cells hold exactly that prefix when it is saved (``_run_queued_copies``
        makes sure that step comes).
        """
        return [
            s
            for s in self._active
            if s.waiting_for is None
            and s.prefilled < len(s.prompt)
            and not (s.snapshot_length and self._copy_queued(s))
        ]

    def _run_queued_copies(self) -> None:
        """When only requests waiting for a copy to save are left, run the copy now.

        llama.cpp performs a queued stream copy at the start of a decode, and has
        no call that only performs it. So decode the first held request's next
        prompt token alone and drop that cell again: the copy has run, and the
        cells hold exactly the shared prefix, ready to save. One extra decode of
        one token, once per saved prefix.
        """
        held = [s for s in self._active if s.snapshot_length and self._copy_queued(s)]
        others = [s for s in self._active if s.waiting_for is None and s not in held]
        if not held or others:
            return
        sequence = held[0]
        position = sequence.prefilled
        self._add(self._batch, 0, sequence.prompt[position], position, sequence.seq_id, False)
        self._batch.n_tokens = 1
        status = self._lib.llama_decode(self._ctx, self._batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")
        self._lib.llama_memory_seq_rm(self._memory, sequence.seq_id, position, -1)
        self._queued_copies.clear()

    def _greedy(self, index: int) -> int:
        """The most likely token of batch position ``index``.

        The same choice as llama.cpp's greedy sampler (the first of equal
        maxima), but llama_sampler_sample first copies the whole vocabulary
        into a candidate array: 0.2 ms per token for a 49k vocabulary on 2
        cores, against 10 us for an argmax over a view of the logits row.
        """
        row = self._lib.llama_get_logits_ith(self._ctx, index)
        return int(np.ctypeslib.as_array(row, shape=(self._n_vocab,)).argmax())

    @staticmethod
    def _add(batch: Any, index: int, token: int, position: int, seq_id: int, logits: bool) -> None:
        batch.token[index] = token
        batch.pos[index] = position
        batch.n_seq_id[index] = 1
        batch.seq_id[index][0] = seq_id
        batch.logits[index] = logits

    def _deliver(self, sequence: _Sequence, token: int) -> bool:
        """Hand one sampled token to its request; True when the request is done."""
        if self.is_end_of_generation(token):
            sequence.emit.end_of_generation()
            return True
        sequence.generated += 1
        sequence.last_token = token
        finish: FinishReason | None = (
            "length" if sequence.generated >= sequence.options.max_tokens else None
        )
        return sequence.emit.token(self.piece(token), finish)

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            self.failure = error
            pending = list(self._pending)
            self._pending.clear()
        for sequence in list(self._active):
            sequence.emit.failed(error)
            self._release(sequence)
        for request in pending:
            request.emit.failed(BackendDeadError(f"llama.cpp failed: {error}"))
