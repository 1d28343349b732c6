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

One thread owns the context (llama.cpp contexts are not thread-safe); other
threads only tokenize, which reads the immutable vocabulary.
"""

from __future__ import annotations

import ctypes
import heapq
import logging
import random
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from predictor.backends.base import (
    BackendDeadError,
    BackendLoadError,
    FinishReason,
    SamplingOptions,
)

logger = logging.getLogger(__name__)

# While other sequences are decoding, a newcomer's prompt goes in chunks of at
# most this many tokens, so their next token waits for one chunk, not for the
# whole prompt. Alone, a prompt goes in chunks of n_batch (faster per token).
PROMPT_CHUNK_WHILE_DECODING = 128

_backend_ready = False
_backend_lock = threading.Lock()


def _llama_cpp() -> Any:
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


class Emit(Protocol):
    """How the decode loop talks to one request; the backend's job implements it.

    Called on the decode thread, so implementations must only hand data over.
    """

    def started(self) -> None:
        """The request got a sequence: it left the queue."""

    def token(self, piece: bytes, finish_reason: FinishReason | None) -> bool:
        """One sampled token's bytes; True when the request is done (a stop string, say)."""

    def end_of_generation(self) -> None:
        """The model ended the answer: the request is done."""

    def failed(self, error: BaseException) -> None:
        """The engine failed; no more tokens will come."""

    def cancelled(self) -> bool:
        """True once the request was aborted: its sequence is freed before the next step."""


@dataclass
class _Sequence:
    """One request's place in the context."""

    seq_id: int
    prompt: list[int]
    options: SamplingOptions
    emit: Emit
    sampler: Any | None  # None: greedy (temperature 0), see LlamaEngine._greedy
    prefilled: int = 0
    n_past: int = 0
    last_token: int = -1
    generated: int = 0
    logits_index: int = -1


@dataclass
class _Pending:
    prompt: list[int]
    options: SamplingOptions
    emit: Emit


class LlamaEngine:
    """A loaded GGUF model and its batched decode loop."""

    def __init__(self, model_path: Path, config: EngineConfig) -> None:
        self._lib = _llama_cpp()
        self.config = config
        self._model: Any = None
        self._ctx: Any = None
        self._batch: Any = None
        self._pieces: dict[int, bytes] = {}
        self._lock = threading.Condition()
        self._pending: deque[_Pending] = deque()
        # A min-heap: the lowest free id goes first (see _step for why order matters).
        self._free_seq_ids = list(range(config.n_parallel))
        self._active: list[_Sequence] = []
        self._stopping = False
        self.failure: BaseException | None = None
        self._load(model_path)
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
        # request that passed the context check can always be decoded.
        params.kv_unified = False
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
                self._admit()
            self._drop_cancelled()
            if not self._active:
                continue
            try:
                self._step()
            except Exception as exc:  # the context's state is unknown now: the engine is dead
                logger.exception("llama.cpp decode failed")
                self._fail(exc)

    def _admit(self) -> None:
        """Give waiting requests free sequence ids, in arrival order (lock held)."""
        while self._pending and self._free_seq_ids:
            request = self._pending.popleft()
            if request.emit.cancelled():
                continue
            seq_id = heapq.heappop(self._free_seq_ids)
            self._active.append(
                _Sequence(
                    seq_id=seq_id,
                    prompt=request.prompt,
                    options=request.options,
                    emit=request.emit,
                    sampler=self._new_sampler(request.options),
                )
            )
            request.emit.started()

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
        lib = self._lib
        lib.llama_memory_seq_rm(self._memory, sequence.seq_id, -1, -1)
        self._free_sampler(sequence)
        self._active.remove(sequence)
        with self._lock:
            heapq.heappush(self._free_seq_ids, sequence.seq_id)

    def _free_sampler(self, sequence: _Sequence) -> None:
        if sequence.sampler is not None:
            self._lib.llama_sampler_free(sequence.sampler)
            sequence.sampler = None

    def _drop_cancelled(self) -> None:
        for sequence in [s for s in self._active if s.emit.cancelled()]:
            self._release(sequence)

    def _step(self) -> None:
        """One llama_decode over every active sequence; then sample and deliver."""
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
            sequence.n_past += 1
            sequence.logits_index = count
            count += 1
        budget = self.config.n_batch - count
        if decoding:
            budget = min(budget, PROMPT_CHUNK_WHILE_DECODING)
        for sequence in self._active:
            if budget <= 0:
                break
            remaining = len(sequence.prompt) - sequence.prefilled
            if remaining == 0:
                continue
            take = min(budget, remaining)
            start = sequence.prefilled
            for offset in range(take):
                position = start + offset
                last = position == len(sequence.prompt) - 1
                self._add(batch, count, sequence.prompt[position], position, sequence.seq_id, last)
                if last:
                    sequence.logits_index = count
                count += 1
            sequence.prefilled += take
            sequence.n_past = sequence.prefilled
            budget -= take
        batch.n_tokens = count
        status = self._lib.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")
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
