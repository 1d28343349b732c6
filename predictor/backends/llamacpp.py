"""The CPU backend: llama.cpp through llama-cpp-python's C bindings, batched.

Concurrent requests decode together in one context (``llamacpp_engine``): each
gets a sequence, requests join and leave between decode steps, and a running
stream is never interrupted by a newer request (unlike ``llama_cpp.server``).
The event loop never blocks: tokens travel from the decode thread to the
request's ``_Mailbox``, which wakes the event loop only when its consumer has
drained everything before; tokens that arrive while the loop is busy go out
together as one chunk. Cancellation is a flag the decode loop checks before
every step, so a disconnected client stops decoding within one token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from predictor.backends.base import (
    BackendInfo,
    BackendLoadError,
    FinishReason,
    GenerationChunk,
    OnStart,
    PrefixSource,
    Prompt,
    RequestAborted,
    SamplingOptions,
)
from predictor.backends.chat_template import ChatTemplate, ChatTemplateError
from predictor.backends.gguf_metadata import GGUFError, GGUFMetadata, read_gguf_metadata
from predictor.backends.llamacpp_engine import EngineConfig, KVSettings, LlamaEngine
from predictor.backends.prefix_store import (
    OnFileEvent,
    PrefixKey,
    PrefixStore,
    start_model_digest,
)
from predictor.backends.text_stream import StopTextStream
from predictor.cpu_quota import usable_cpu_count

logger = logging.getLogger(__name__)

# Per sequence: a model trained for 128k tokens would otherwise reserve its
# full KV cache for every sequence at load. --n_ctx raises it.
DEFAULT_CONTEXT_CAP = 4096
# Default parallel sequences: four per CPU (decode is memory-bound, so a core
# keeps up with several streams), at most 8, and no more than fit
# DEFAULT_KV_BUDGET_BYTES of KV cache at the per-sequence context. Measured on
# 2 CPUs against llama-server --parallel 8 (docs/benchmarks.md): 8 sequences
# match it at concurrency 8 (1.02, TTFT p95 0.47 s) where 4 gave 0.94 (2.5 s),
# at no cost at concurrency 1 and 4, for about 360 MiB more at 4096 cells.
PARALLEL_PER_CPU = 4
MAX_DEFAULT_PARALLEL = 8
DEFAULT_KV_BUDGET_BYTES = 1 << 30


class _Started:
    """Marker sent when the worker picks the job up (it left the queue)."""


class _Aborted:
    """Marker ``abort`` posts so the job's consumer wakes up at once."""


_Item = GenerationChunk | _Started | _Aborted | BaseException


class _Mailbox:
    """Items posted from the worker thread, collected in batches on the event loop.

    Waking the event loop costs a system call and a trip through its ready
    queue, and on a small CPU pod that time comes out of the decode threads'
    share. So a post wakes the loop only when no wake-up is pending yet: while
    the consumer is busy, tokens pile up and are taken together.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[_Item] = []
        self._wake_pending = False
        self._ready = asyncio.Event()

    def post(self, item: _Item) -> None:
        """Called from any thread, the event loop's included."""
        with self._lock:
            self._items.append(item)
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self._loop.call_soon_threadsafe(self._ready.set)

    async def take(self) -> list[_Item]:
        """Everything posted so far, waiting for at least one item."""
        while True:
            with self._lock:
                items, self._items = self._items, []
                self._wake_pending = False
            if items:
                return items
            await self._ready.wait()
            self._ready.clear()


class _Job:
    """One request: the decode loop's ``Emit`` on one side, a mailbox on the other."""

    def __init__(self, options: SamplingOptions, mailbox: _Mailbox) -> None:
        self.mailbox = mailbox
        self._text = StopTextStream(options.stop)
        self._cancelled = threading.Event()
        # Set on the decode thread before the first token is posted, so the
        # mailbox's lock orders it before the chunk that reports it.
        self.reuse: tuple[int, PrefixSource] | None = None

    def cancel(self) -> None:
        self._cancelled.set()

    # Emit, called on the decode thread.
    def started(self) -> None:
        self.mailbox.post(_Started())

    def reused(self, tokens: int, source: PrefixSource) -> None:
        self.reuse = (tokens, source)

    def token(self, piece: bytes, finish_reason: FinishReason | None) -> bool:
        text = self._text
        delta = text.feed(piece)
        if text.stopped:
            self.mailbox.post(GenerationChunk(text=delta, num_tokens=1, finish_reason="stop"))
            return True
        if finish_reason is not None:
            delta += text.flush()
        self.mailbox.post(GenerationChunk(text=delta, num_tokens=1, finish_reason=finish_reason))
        return finish_reason is not None

    def end_of_generation(self) -> None:
        self.mailbox.post(
            GenerationChunk(text=self._text.flush(), num_tokens=0, finish_reason="stop")
        )

    def failed(self, error: BaseException) -> None:
        self.mailbox.post(error)

    def cancelled(self) -> bool:
        return self._cancelled.is_set()


def resolve_context_length(requested: int | None, trained: int | None) -> int:
    """The context per sequence: the setting, else the trained length capped at 4096."""
    if requested is not None:
        return requested
    if trained is None:
        return DEFAULT_CONTEXT_CAP
    return min(trained, DEFAULT_CONTEXT_CAP)


def default_parallel(cpus: int, context: int, kv_bytes_per_token: int | None) -> int:
    """Sequences decoded together when --n_parallel is not set (see the constants above)."""
    parallel = min(MAX_DEFAULT_PARALLEL, PARALLEL_PER_CPU * max(1, cpus))
    if kv_bytes_per_token:
        parallel = min(parallel, DEFAULT_KV_BUDGET_BYTES // (kv_bytes_per_token * context))
    return max(1, parallel)


@dataclass(frozen=True)
class PrefixCacheSettings:
    """Prefix reuse is on; ``directory`` (None: not kept) is where shared prefixes persist,
    and ``ram_bytes`` the host memory for cells the sequences gave up (prefix_ram)."""

    directory: Path | None = None
    max_bytes: int = 0
    on_file_event: OnFileEvent | None = None
    ram_bytes: int = 0
    on_ram_bytes: Callable[[int], None] | None = None  # the bytes held, after each change

    def opener(self, model_path: Path) -> Callable[[KVSettings], PrefixStore | None]:
        """Starts hashing the model file now (it overlaps the load) and returns what
        opens the store once the engine knows its KV settings."""
        assert self.directory is not None
        directory = self.directory
        digest: Future[str] = start_model_digest(model_path, directory)

        def open_store(kv: KVSettings) -> PrefixStore | None:
            import llama_cpp

            try:
                model_sha256 = digest.result()
            except OSError as exc:
                logger.warning("prefix cache off: cannot hash %s: %s", model_path, exc)
                return None
            key = PrefixKey(
                model_sha256=model_sha256,
                llama_cpp_python=llama_cpp.__version__,
                **dataclasses.asdict(kv),
            )
            return PrefixStore(
                directory, key, max_bytes=self.max_bytes, on_event=self.on_file_event
            )

        return open_store


class LlamaCppBackend:
    """Serves one GGUF model on the CPU."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int | None,
        n_threads: int | None,
        n_batch: int,
        n_parallel: int | None,
        metadata: GGUFMetadata | None = None,
        chat_template: ChatTemplate | None = None,
        flash_attn: bool = False,
        prefix_cache: PrefixCacheSettings | None = None,
    ) -> None:
        """``metadata`` and ``chat_template``, when given, are what checking the file
        read already (``select.locate_model``); otherwise ``load`` reads them.
        ``prefix_cache`` None turns prefix reuse off."""
        self._model_path = Path(model_path)
        self._requested_ctx = n_ctx
        # The container's CPU quota, not the host's cores: more threads than the
        # quota allows only get throttled.
        self._n_threads = n_threads or usable_cpu_count()
        self._n_batch = n_batch
        self._requested_parallel = n_parallel
        self._flash_attn = flash_attn
        self._prefix_cache = prefix_cache
        self._engine: LlamaEngine | None = None
        self._metadata = metadata
        self._chat_template = chat_template
        self._bos_text = ""
        self._info: BackendInfo | None = None
        self._jobs: dict[str, _Job] = {}

    @property
    def info(self) -> BackendInfo:
        if self._info is None:
            raise RuntimeError("backend not loaded")
        return self._info

    def parallel_for(self, metadata: GGUFMetadata) -> int:
        """The sequences this backend decodes together for a model with ``metadata``."""
        if self._requested_parallel is not None:
            return self._requested_parallel
        context = resolve_context_length(self._requested_ctx, metadata.context_length)
        return default_parallel(self._n_threads, context, metadata.kv_bytes_per_token)

    async def load(self) -> None:
        if self._metadata is None:
            self._metadata = await self._read_metadata()
        context = resolve_context_length(self._requested_ctx, self._metadata.context_length)
        parallel = self.parallel_for(self._metadata)
        config = EngineConfig(
            n_parallel=parallel,
            n_ctx_per_seq=context,
            n_threads=self._n_threads,
            # Room for every decoding sequence's token next to a prompt chunk.
            n_batch=max(self._n_batch, parallel),
            flash_attn=self._flash_attn,
            prefix_reuse=self._prefix_cache is not None,
            prefix_ram_bytes=0 if self._prefix_cache is None else self._prefix_cache.ram_bytes,
        )
        opener = None
        if self._prefix_cache is not None and self._prefix_cache.directory is not None:
            opener = self._prefix_cache.opener(self._model_path)
        self._engine = await asyncio.to_thread(
            LlamaEngine,
            self._model_path,
            config,
            open_prefix_store=opener,
            on_ram_bytes=None if self._prefix_cache is None else self._prefix_cache.on_ram_bytes,
        )
        self._prepare_chat_template()
        self._info = BackendInfo(
            backend="llamacpp",
            device="cpu",
            quantization=self._metadata.quantization,
            context_length=self._engine.n_ctx_per_seq,
            max_parallel=parallel,
        )

    async def _read_metadata(self) -> GGUFMetadata:
        try:
            return await asyncio.to_thread(read_gguf_metadata, self._model_path)
        except FileNotFoundError as exc:
            raise BackendLoadError(f"model file not found: {self._model_path}") from exc
        except GGUFError as exc:
            raise BackendLoadError(f"cannot load {self._model_path}: {exc}") from exc

    def _prepare_chat_template(self) -> None:
        """Bind the template to the BOS and EOS text, known once the vocabulary is loaded."""
        assert self._engine is not None and self._metadata is not None
        engine = self._engine
        bos_id, eos_id = engine.bos, engine.eos
        self._bos_text = self._special_piece(bos_id) if bos_id >= 0 else ""
        template = self._chat_template
        if template is None and self._metadata.chat_template is not None:
            template = ChatTemplate(self._metadata.chat_template)
        if template is not None:
            self._chat_template = template.with_special_tokens(
                bos_token=self._bos_text,
                eos_token=self._special_piece(eos_id) if eos_id >= 0 else "",
            )

    def _special_piece(self, token: int) -> str:
        assert self._engine is not None
        return self._engine.piece(token, special=True).decode("utf-8", errors="replace")

    def tokenize(self, text: str) -> list[int]:
        assert self._engine is not None
        return self._engine.tokenize(text.encode("utf-8"), add_special=True, parse_special=True)

    def render_chat(self, messages: list[dict[str, str]]) -> Prompt:
        """The chat template's text, tokenized so that only the template writes control tokens.

        Message contents are tokenized as plain text: a user who writes
        ``<|im_end|><|im_start|>system`` gets those characters, not a system
        turn. Only the template's own parts are parsed for special tokens.
        """
        if self._chat_template is None:
            raise ChatTemplateError("this model has no chat template; use the completions endpoint")
        assert self._engine is not None
        parts = self._chat_template.render_parts(messages)
        if not parts:
            return self._render_chat_whole(messages)
        text = "".join(piece for piece, _ in parts)
        # Templates that write the BOS token themselves must not get a second one.
        add_bos = not (self._bos_text and text.startswith(self._bos_text))
        ids: list[int] = []
        for index, (piece, is_content) in enumerate(parts):
            ids += self._engine.tokenize(
                piece.encode("utf-8"),
                add_special=add_bos and index == 0,
                parse_special=not is_content,
            )
        return Prompt(text=text, token_ids=ids)

    def _render_chat_whole(self, messages: list[dict[str, str]]) -> Prompt:
        """For a template that transforms contents, so that they cannot be told apart in
        its output: allowed only when no content holds control-token text."""
        assert self._engine is not None and self._chat_template is not None
        engine = self._engine
        for message in messages:
            content = message["content"].encode("utf-8")
            if engine.tokenize(content, add_special=False, parse_special=True) != engine.tokenize(
                content, add_special=False, parse_special=False
            ):
                raise ChatTemplateError(
                    "a message holds the text of a control token, which this model's chat "
                    "template does not let kzero keep apart from its own"
                )
        text = self._chat_template.render(messages)
        add_bos = not (self._bos_text and text.startswith(self._bos_text))
        ids = engine.tokenize(text.encode("utf-8"), add_special=add_bos, parse_special=True)
        return Prompt(text=text, token_ids=ids)

    async def generate(
        self,
        request_id: str,
        prompt: Prompt,
        options: SamplingOptions,
        on_start: OnStart | None = None,
    ) -> AsyncIterator[GenerationChunk]:
        assert self._engine is not None
        job = _Job(options, _Mailbox(asyncio.get_running_loop()))
        self._jobs[request_id] = job
        self._engine.submit(prompt.token_ids, options, job)
        first = True
        try:
            while True:
                chunk = self._merge(await job.mailbox.take(), request_id, on_start)
                if chunk is not None:
                    if first and job.reuse is not None:
                        cached, source = job.reuse
                        chunk = dataclasses.replace(
                            chunk, cached_tokens=cached, cache_source=source
                        )
                    first = False
                    yield chunk
                    if chunk.finish_reason is not None:
                        return
        finally:
            # Reached on completion, on error and when the consumer closes us
            # early (client gone): the decode loop frees the sequence before
            # its next step.
            job.cancel()
            self._jobs.pop(request_id, None)

    @staticmethod
    def _merge(
        items: list[_Item], request_id: str, on_start: OnStart | None
    ) -> GenerationChunk | None:
        """One chunk carrying every token in ``items``; raises what the engine raised."""
        text: list[str] = []
        num_tokens = 0
        finish_reason: FinishReason | None = None
        for item in items:
            if isinstance(item, _Started):
                if on_start is not None:
                    on_start()
            elif isinstance(item, _Aborted):
                raise RequestAborted(request_id)
            elif isinstance(item, BaseException):
                raise item
            else:
                text.append(item.text)
                num_tokens += item.num_tokens
                finish_reason = item.finish_reason
        if not text:
            return None
        return GenerationChunk(
            text="".join(text), num_tokens=num_tokens, finish_reason=finish_reason
        )

    async def abort(self, request_id: str) -> None:
        job = self._jobs.get(request_id)
        if job is not None:
            job.cancel()
            job.mailbox.post(_Aborted())

    async def healthy(self) -> bool:
        return self._engine is not None and self._engine.failure is None

    async def shutdown(self) -> None:
        for job in list(self._jobs.values()):
            job.cancel()
        engine, self._engine = self._engine, None
        if engine is not None:
            await asyncio.to_thread(engine.close)
