"""The CPU backend: llama.cpp through llama-cpp-python.

One ``Llama`` holds one context and is not thread-safe, so all decoding runs on
one dedicated worker thread; requests wait in its FIFO queue and each runs to
completion (never interrupted by a newer request, unlike ``llama_cpp.server``).
The event loop never blocks: tokens travel from the worker to the request's
``_Mailbox``, which wakes the event loop only when its consumer has drained
everything before; tokens that arrive while the loop is busy go out together
as one chunk. Cancellation is a flag the worker checks before every token, so
a disconnected client stops decoding within one token.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from predictor.backends.base import (
    BackendDeadError,
    BackendInfo,
    BackendLoadError,
    GenerationChunk,
    OnStart,
    Prompt,
    RequestAborted,
    SamplingOptions,
)
from predictor.backends.chat_template import ChatTemplate, ChatTemplateError
from predictor.backends.gguf_metadata import GGUFError, GGUFMetadata, read_gguf_metadata
from predictor.backends.text_stream import StopTextStream

if TYPE_CHECKING:
    from llama_cpp import Llama

logger = logging.getLogger(__name__)

# A model trained for 128k tokens would otherwise reserve its full KV cache at
# load; 8192 covers chat use and fits small pods. --n_ctx raises it.
DEFAULT_CONTEXT_CAP = 8192


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


@dataclass
class _Job:
    """One request's state, shared between the event loop and the worker thread."""

    prompt: Prompt
    options: SamplingOptions
    mailbox: _Mailbox
    cancelled: threading.Event = field(default_factory=threading.Event)


def resolve_context_length(requested: int | None, trained: int | None) -> int:
    """The context to allocate: the setting, else the trained length capped at 8192."""
    if requested is not None:
        return requested
    if trained is None:
        return DEFAULT_CONTEXT_CAP
    return min(trained, DEFAULT_CONTEXT_CAP)


class LlamaCppBackend:
    """Serves one GGUF model on the CPU."""

    def __init__(
        self, model_path: str | Path, *, n_ctx: int | None, n_threads: int, n_batch: int
    ) -> None:
        self._model_path = Path(model_path)
        self._requested_ctx = n_ctx
        self._n_threads = n_threads
        self._n_batch = n_batch
        self._llama: Llama | None = None
        self._metadata: GGUFMetadata | None = None
        self._chat_template: ChatTemplate | None = None
        self._bos_text = ""
        self._info: BackendInfo | None = None
        # One thread owns the Llama; its FIFO work queue is the request queue.
        self._worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="llamacpp"
        )
        self._jobs: dict[str, _Job] = {}
        # The first decode failure. After it the context's state is unknown, so
        # the engine counts as dead: health turns false and the process restarts.
        self._failure: BaseException | None = None

    @property
    def info(self) -> BackendInfo:
        if self._info is None:
            raise RuntimeError("backend not loaded")
        return self._info

    async def load(self) -> None:
        try:
            self._metadata = await asyncio.to_thread(read_gguf_metadata, self._model_path)
        except FileNotFoundError as exc:
            raise BackendLoadError(f"model file not found: {self._model_path}") from exc
        except GGUFError as exc:
            raise BackendLoadError(f"cannot load {self._model_path}: {exc}") from exc
        n_ctx = resolve_context_length(self._requested_ctx, self._metadata.context_length)
        loop = asyncio.get_running_loop()
        self._llama = await loop.run_in_executor(self._worker, self._open, n_ctx)
        self._prepare_chat_template()
        self._info = BackendInfo(
            backend="llamacpp",
            device="cpu",
            model_path=str(self._model_path),
            quantization=self._metadata.quantization,
            context_length=self._llama.n_ctx(),
            extra={"n_threads": self._n_threads, "architecture": self._metadata.architecture},
        )

    def _open(self, n_ctx: int) -> Llama:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendLoadError(
                "llama.cpp backend requested but llama-cpp-python is not installed: "
                "pip install 'kzero[cpu]'"
            ) from exc
        try:
            return Llama(
                model_path=str(self._model_path),
                n_ctx=n_ctx,
                n_batch=min(self._n_batch, n_ctx),
                n_threads=self._n_threads,
                n_threads_batch=self._n_threads,
                use_mmap=True,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise BackendLoadError(f"llama.cpp failed to load {self._model_path}: {exc}") from exc

    def _prepare_chat_template(self) -> None:
        assert self._llama is not None and self._metadata is not None
        bos_id, eos_id = self._llama.token_bos(), self._llama.token_eos()
        self._bos_text = self._piece(bos_id) if bos_id >= 0 else ""
        source = self._metadata.chat_template
        if source is not None:
            self._chat_template = ChatTemplate(
                source,
                bos_token=self._bos_text,
                eos_token=self._piece(eos_id) if eos_id >= 0 else "",
            )

    def _piece(self, token: int) -> str:
        assert self._llama is not None
        return self._llama.detokenize([token], special=True).decode("utf-8", errors="replace")

    def tokenize(self, text: str) -> list[int]:
        assert self._llama is not None
        return self._llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def render_chat(self, messages: list[dict[str, str]]) -> Prompt:
        if self._chat_template is None:
            raise ChatTemplateError("this model has no chat template; use the completions endpoint")
        text = self._chat_template.render(messages)
        assert self._llama is not None
        # Templates that write the BOS token themselves must not get a second one.
        add_bos = not (self._bos_text and text.startswith(self._bos_text))
        ids = self._llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        return Prompt(text=text, token_ids=ids)

    async def generate(
        self,
        request_id: str,
        prompt: Prompt,
        options: SamplingOptions,
        on_start: OnStart | None = None,
    ) -> AsyncIterator[GenerationChunk]:
        job = _Job(prompt=prompt, options=options, mailbox=_Mailbox(asyncio.get_running_loop()))
        self._jobs[request_id] = job
        self._worker.submit(self._run, job)
        try:
            while True:
                chunk = self._merge(await job.mailbox.take(), request_id, on_start)
                if chunk is not None:
                    yield chunk
                    if chunk.finish_reason is not None:
                        return
        finally:
            # Reached on completion, on error and when the consumer closes us
            # early (client gone): the worker sees the flag before its next token.
            job.cancelled.set()
            self._jobs.pop(request_id, None)

    @staticmethod
    def _merge(
        items: list[_Item], request_id: str, on_start: OnStart | None
    ) -> GenerationChunk | None:
        """One chunk carrying every token in ``items``; raises what the worker raised."""
        text: list[str] = []
        num_tokens = 0
        finish_reason: str | None = None
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

    def _run(self, job: _Job) -> None:
        """Decode one request on the worker thread."""
        if job.cancelled.is_set():
            return
        if self._failure is not None:
            job.mailbox.post(BackendDeadError(f"llama.cpp failed earlier: {self._failure}"))
            return
        job.mailbox.post(_Started())
        try:
            self._decode(job)
        except Exception as exc:  # surfaced to the request, which answers 500
            logger.exception("llama.cpp generation failed")
            self._failure = exc
            job.mailbox.post(exc)

    def _decode(self, job: _Job) -> None:
        import llama_cpp

        llama = self._llama
        assert llama is not None
        options = job.options
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        # A fresh KV state per request: re-using a cached prefix would evaluate
        # the prompt in different batch splits, which can change greedy output.
        llama.reset()
        llama.set_seed(options.seed if options.seed is not None else random.getrandbits(32))
        text = StopTextStream(options.stop)
        tokens = llama.generate(
            job.prompt.token_ids,
            # OpenAI semantics: only temperature and top_p shape the distribution.
            top_k=0,
            top_p=options.top_p,
            min_p=0.0,
            typical_p=1.0,
            temp=options.temperature,
            repeat_penalty=1.0,
        )
        for generated, token in enumerate(tokens, start=1):
            if job.cancelled.is_set():
                return
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                job.mailbox.post(
                    GenerationChunk(text=text.flush(), num_tokens=0, finish_reason="stop")
                )
                return
            delta = text.feed(llama.detokenize([token]))
            if text.stopped:
                job.mailbox.post(GenerationChunk(text=delta, num_tokens=1, finish_reason="stop"))
                return
            if generated >= options.max_tokens:
                delta += text.flush()
                job.mailbox.post(GenerationChunk(text=delta, num_tokens=1, finish_reason="length"))
                return
            job.mailbox.post(GenerationChunk(text=delta, num_tokens=1))

    async def abort(self, request_id: str) -> None:
        job = self._jobs.get(request_id)
        if job is not None:
            job.cancelled.set()
            job.mailbox.post(_Aborted())

    async def healthy(self) -> bool:
        return self._llama is not None and self._failure is None

    async def shutdown(self) -> None:
        for job in list(self._jobs.values()):
            job.cancelled.set()
        self._worker.shutdown(wait=True, cancel_futures=True)
        if self._llama is not None:
            self._llama.close()
            self._llama = None
