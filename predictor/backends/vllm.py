"""The GPU backend: vLLM's ``AsyncLLM`` (the v1 engine, vllm >= 0.11).

vLLM and torch are several GB and exist only in the GPU image, so nothing here
imports ``vllm`` at module level: the CPU image imports this module (for
``check_model_dir`` and the backend table) without them. vLLM already schedules
requests continuously and streams deltas from an async generator, so this
adapter stays thin: it passes token ids in, maps outputs to
``GenerationChunk`` and turns engine death into ``BackendDeadError``.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError

from predictor.backends.base import (
    BackendDeadError,
    BackendInfo,
    BackendLoadError,
    FinishReason,
    GenerationChunk,
    OnStart,
    Prompt,
    RequestAborted,
    SamplingOptions,
)
from predictor.backends.chat_template import ChatTemplateError, render_parts_with
from predictor.backends.select import check_safetensors_weights

if TYPE_CHECKING:
    from vllm.v1.engine.async_llm import AsyncLLM

logger = logging.getLogger(__name__)

# vLLM's own default for max_num_seqs, when --max_running_requests is not set.
DEFAULT_MAX_NUM_SEQS = 256

NOT_INSTALLED = (
    "vLLM backend requested but the 'vllm' package is not installed: pip install 'kzero[gpu]'"
)

FORGED_CONTROL_TOKEN = (
    "a message holds the text of a control token, which this model's chat template "
    "does not let kzero keep apart from its own"
)


def check_model_dir(path: str | Path) -> None:
    """Refuse anything but a Hugging Face directory with safetensors weights.

    Runs before vLLM is imported, so a wrong model fails in a second with one
    readable line instead of after a CUDA start-up. Pickle weights are refused
    outright: loading them executes whatever the file says.
    """
    root = Path(path)
    if not root.is_dir():
        raise BackendLoadError(
            f"vLLM needs a Hugging Face model directory, but {root} is not a directory "
            "(a GGUF file is served by the llamacpp backend)"
        )
    if not (root / "config.json").is_file():
        raise BackendLoadError(
            f"{root} has no config.json: vLLM needs a Hugging Face model directory "
            "(config.json and *.safetensors weights)"
        )
    # The same check locate_model runs at startup; repeated here because the
    # backend can be built without going through locate_model (tests, the bench).
    check_safetensors_weights(root)


def _finish_reason(reason: str, request_id: str) -> FinishReason | None:
    """Map vLLM's finish reasons onto the two the serving layer knows.

    ``abort`` (``None`` here) means someone called ``abort()`` for this request,
    which ``generate`` reports as ``RequestAborted``. ``error`` is vLLM's
    request-level internal failure, which it always reports as a server error.
    """
    if reason == "length":
        return "length"
    if reason == "abort":
        return None
    if reason == "error":
        raise RuntimeError(f"vLLM failed request {request_id} with an internal error")
    # "stop" (EOS, stop string or stop token) and "repetition" (vLLM cut a
    # repeating pattern short) both end the text on the model's side.
    return "stop"


class VllmBackend:
    """One model served by vLLM's ``AsyncLLM`` on a CUDA GPU."""

    def __init__(
        self,
        model_path: str,
        *,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.90,
        enforce_eager: bool = False,
        dtype: str = "auto",
        served_model_name: str = "model",
        max_num_seqs: int | None = None,
    ) -> None:
        self._model_path = model_path
        self._max_num_seqs = max_num_seqs or DEFAULT_MAX_NUM_SEQS
        self._max_model_len = max_model_len
        self._gpu_memory_utilization = gpu_memory_utilization
        self._enforce_eager = enforce_eager
        self._dtype = dtype
        self._served_model_name = served_model_name
        self._engine: AsyncLLM | None = None
        self._tokenizer: Any = None
        # Ids the tokenizer reads as control tokens when their text appears (see
        # _control_token_ids), known once the tokenizer is loaded.
        self._control_ids: frozenset[int] = frozenset()
        self._newline_ids: list[int] = []
        # Serializes kzero's encode calls (they run on worker threads): a Hugging
        # Face fast tokenizer keeps split_special_tokens as state on the shared
        # Rust tokenizer, set just before each encode (see _encode).
        self._encode_lock = threading.Lock()
        self._info: BackendInfo | None = None
        # vLLM's EngineDeadError, known once vllm is imported in load().
        self._engine_dead_error: type[BaseException] | None = None

    @property
    def info(self) -> BackendInfo:
        if self._info is None:
            raise RuntimeError("backend not loaded")
        return self._info

    async def load(self) -> None:
        check_model_dir(self._model_path)
        try:
            import vllm
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
            from vllm.v1.engine.exceptions import EngineDeadError
        except ImportError as exc:
            if isinstance(exc, ModuleNotFoundError) and exc.name == "vllm":
                raise BackendLoadError(NOT_INSTALLED) from exc
            # Installed but broken, e.g. a CUDA or torch mismatch in the image.
            raise BackendLoadError(f"vLLM is installed but cannot be imported: {exc}") from exc

        args = AsyncEngineArgs(
            model=self._model_path,
            served_model_name=self._served_model_name,
            max_model_len=self._max_model_len,
            gpu_memory_utilization=self._gpu_memory_utilization,
            enforce_eager=self._enforce_eager,
            dtype=self._dtype,
            max_num_seqs=self._max_num_seqs,
            # Reuse the KV of a prompt prefix another request computed (full
            # blocks, 16 tokens on CUDA). vLLM's V1 engine turns this on when it
            # is left None (EngineArgs._set_default_args, vllm/engine/arg_utils.py
            # at v0.11.0); set explicitly so a change of default cannot turn it
            # off unseen. Hits come back as RequestOutput.num_cached_tokens.
            enable_prefix_caching=True,
            # A model directory is untrusted input: no Python from the model
            # repository, and (with check_model_dir) no pickle weights.
            trust_remote_code=False,
            load_format="safetensors",
        )
        try:
            # Created on the running loop, as vLLM's own server does: AsyncLLM
            # starts its output handler task on the loop it finds here.
            engine = AsyncLLM.from_engine_args(args)
        except Exception as exc:
            raise BackendLoadError(
                f"vLLM could not start an engine for {self._model_path}: {exc}"
            ) from exc

        tokenizer = engine.get_tokenizer()
        if inspect.isawaitable(tokenizer):
            # Older vLLM releases declare get_tokenizer() as a coroutine.
            tokenizer = await tokenizer
        model_config = engine.model_config
        self._engine = engine
        self._tokenizer = tokenizer
        self._control_ids = _control_token_ids(tokenizer)
        self._newline_ids = self._encode("\n")
        self._engine_dead_error = EngineDeadError
        self._info = BackendInfo(
            backend="vllm",
            device="cuda",
            quantization=model_config.quantization or _dtype_name(model_config.dtype),
            context_length=model_config.max_model_len,
            max_parallel=self._max_num_seqs,
        )
        logger.info(
            "vLLM %s serving %s (context %d, %s)",
            vllm.__version__,
            self._model_path,
            self._info.context_length,
            self._info.quantization,
        )

    def tokenize(self, text: str) -> list[int]:
        # The tokenizer's default adds BOS exactly when the model expects it. A
        # completion prompt is the client's whole text: control tokens in it are
        # meant, so they are parsed.
        tokenizer = self._require_tokenizer()
        with self._encode_lock:
            return list(tokenizer.encode(text))

    def render_chat(self, messages: list[dict[str, str]]) -> Prompt:
        """The chat template's text, tokenized so that only the template writes control tokens.

        A user who writes ``<|im_end|><|im_start|>system`` gets those characters,
        not a system turn. ``render_parts_with`` splits the rendering into what
        the template wrote and the message contents, as in the llama.cpp
        backend. While no content holds control-token text, the whole text is
        encoded at once, as vLLM's own server does, so an ordinary conversation
        gets exactly the ids it always got. Otherwise the parts are encoded one
        by one, the contents with ``split_special_tokens=True`` (see
        ``_encode_part``).
        """
        tokenizer = self._require_tokenizer()
        if not getattr(tokenizer, "chat_template", None):
            raise ChatTemplateError("this model has no chat template; use the completions endpoint")

        def render(conversation: list[dict[str, str]]) -> str:
            try:
                # transformers renders templates in an ImmutableSandboxedEnvironment.
                text = tokenizer.apply_chat_template(
                    conversation, tokenize=False, add_generation_prompt=True
                )
            except (TemplateError, ValueError) as exc:
                raise ChatTemplateError(f"chat template failed: {exc}") from exc
            if not isinstance(text, str):  # vLLM's Mistral tokenizer gives token ids
                raise ChatTemplateError("this model's tokenizer does not render chat text")
            return text

        parts = render_parts_with(render, messages)
        if not parts:
            return self._render_chat_whole(render(messages), messages)
        text = "".join(piece for piece, _ in parts)
        # The template writes BOS itself when the model wants one.
        whole = self._encode(text)
        if not self._control_ids:
            return Prompt(text=text, token_ids=whole)
        parsed = [self._encode(piece) for piece, _ in parts]
        forged = any(
            self._control_ids.intersection(ids)
            for ids, (_, is_content) in zip(parsed, parts, strict=True)
            if is_content
        )
        # A control token can also form across a content's edge, from its text
        # and the template's next to it: then the whole text holds one more.
        if not forged and self._controls(whole) == self._controls(
            [token for ids in parsed for token in ids]
        ):
            return Prompt(text=text, token_ids=whole)
        ids: list[int] = []
        for index, (piece, is_content) in enumerate(parts):
            ids += self._encode_part(piece, plain=is_content, first=index == 0)
        return Prompt(text=text, token_ids=ids)

    def _render_chat_whole(self, text: str, messages: list[dict[str, str]]) -> Prompt:
        """For a template that transforms contents, so that they cannot be told apart in
        its output: allowed only when no content holds control-token text."""
        for message in messages:
            if self._control_ids.intersection(self._encode(message["content"])):
                raise ChatTemplateError(FORGED_CONTROL_TOKEN)
        return Prompt(text=text, token_ids=self._encode(text))

    def _encode(self, text: str, *, plain: bool = False) -> list[int]:
        """Token ids for part of a prompt, no BOS added; ``plain``: special-token text as text.

        ``split_special_tokens`` is transformers' own switch for plain: ``encode``
        passes it on to ``_encode_plus`` (``tokenization_utils_base.py``, read at
        v4.55.2, the floor vLLM 0.11.0 sets, at v4.57.1 and at v5.25.0). A fast
        tokenizer then leaves the added tokens marked special as text
        (``tokenization_utils_fast.py``), a slow one every added token
        (``tokenization_utils.py``). A tokenizer that does not take the argument,
        or still gives a control token, makes the message a 400 instead.
        """
        tokenizer = self._require_tokenizer()
        # A fast tokenizer keeps the flag as state on the Rust tokenizer, set
        # just before the encode, which then releases the GIL
        # (_batch_encode_plus in tokenization_utils_fast.py at v4.57.1): the
        # lock makes "set, then encode" one step for kzero's worker threads.
        with self._encode_lock:
            if not plain:
                return list(tokenizer.encode(text, add_special_tokens=False))
            try:
                ids = list(
                    tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
                )
            except TypeError as exc:  # an encode without that argument
                raise ChatTemplateError(FORGED_CONTROL_TOKEN) from exc
        if self._control_ids.intersection(ids):
            raise ChatTemplateError(FORGED_CONTROL_TOKEN)
        return ids

    def _encode_part(self, piece: str, *, plain: bool, first: bool) -> list[int]:
        """A part of the prompt encoded on its own, as it would be in the middle of the text.

        Encoding a part alone can differ from encoding it inside the whole text
        where it meets its neighbours: a SentencePiece tokenizer starts every
        encoding with its prefix space, so a content after ``[INST] `` would
        get a second space. As transformers' own ``_encode_chat_piece`` does
        (``utils/chat_template_utils.py`` at v5.25.0), a part after the first
        is encoded after a newline, whose ids are then taken off again; if they
        do not come out first, the part is encoded alone. What remains can still
        split a word or a space differently from the whole text at a part's
        edge; the text the ids spell is the same.
        """
        if first:
            return self._encode(piece, plain=plain)
        ids = self._encode("\n" + piece, plain=plain)
        newline = self._newline_ids
        if newline and ids[: len(newline)] == newline:
            return ids[len(newline) :]
        return self._encode(piece, plain=plain)

    def _controls(self, ids: list[int]) -> list[int]:
        return [token for token in ids if token in self._control_ids]

    async def generate(
        self,
        request_id: str,
        prompt: Prompt,
        options: SamplingOptions,
        on_start: OnStart | None = None,
    ) -> AsyncIterator[GenerationChunk]:
        engine = self._require_engine()
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        params = SamplingParams(
            max_tokens=options.max_tokens,
            temperature=options.temperature,
            top_p=options.top_p,
            seed=options.seed,
            stop=list(options.stop),
            output_kind=RequestOutputKind.DELTA,
        )
        # Token ids, not text: the ids the serving layer counted and checked
        # against the context length are exactly what the engine sees.
        stream = engine.generate(
            TokensPrompt(prompt_token_ids=list(prompt.token_ids)), params, request_id
        )
        # vLLM batches continuously: a request joins the running batch at once
        # and any wait happens inside vLLM's scheduler, which exports its own
        # vllm:num_requests_waiting. So the request counts as started here.
        if on_start is not None:
            on_start()
        finished = False
        first = True
        try:
            async for output in stream:
                completion = output.outputs[0]
                finish = None
                if output.finished:
                    finished = True
                    finish = _finish_reason(completion.finish_reason or "stop", request_id)
                if completion.text or completion.token_ids or finish is not None:
                    # Every output of a request carries the same count: the
                    # prompt tokens its first scheduling found in the prefix
                    # cache (Scheduler.schedule, vllm/v1/core/sched/scheduler.py
                    # at v0.11.0). kzero reports it once, on the first chunk.
                    cached = (output.num_cached_tokens or 0) if first else 0
                    first = False
                    yield GenerationChunk(
                        text=completion.text,
                        num_tokens=len(completion.token_ids),
                        finish_reason=finish,
                        cached_tokens=cached,
                        cache_source="memory" if cached > 0 else None,
                    )
                if finished and finish is None:
                    raise RequestAborted(request_id)
        except Exception as exc:
            if engine.errored or (
                self._engine_dead_error is not None and isinstance(exc, self._engine_dead_error)
            ):
                raise BackendDeadError(f"vLLM engine died: {exc!r}") from exc
            raise
        finally:
            # Reached when the consumer closes us early (client gone) or the task
            # is cancelled: free the sequence's KV cache now, not at GC time.
            if not finished:
                await self.abort(request_id)
            await stream.aclose()

    async def abort(self, request_id: str) -> None:
        engine = self._engine
        if engine is None or engine.errored:
            return
        await engine.abort(request_id)

    async def healthy(self) -> bool:
        engine = self._engine
        if engine is None or engine.errored:
            return False
        try:
            await engine.check_health()
        except Exception as exc:  # any failure means "not healthy"
            logger.warning("vLLM health check failed: %r", exc)
            return False
        return True

    async def shutdown(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()

    def _require_engine(self) -> AsyncLLM:
        engine = self._engine
        if engine is None:
            raise BackendDeadError("vLLM engine is not running (not loaded, or shut down)")
        if engine.errored:
            raise BackendDeadError("vLLM engine has died")
        return engine

    def _require_tokenizer(self) -> Any:
        if self._tokenizer is None:
            raise RuntimeError("backend not loaded")
        return self._tokenizer


def _control_token_ids(tokenizer: Any) -> frozenset[int]:
    """Ids of the tokens the tokenizer parses out of text as control tokens.

    Those are the added tokens marked special: the ones ``split_special_tokens``
    leaves as text (``AddedVocabulary`` in tokenizers' added_vocabulary.rs).
    ``all_special_ids`` alone can miss some: it lists the named special tokens
    (BOS, EOS, ``additional_special_tokens``). SmolLM2's tokenizer as
    transformers 4.57.1 builds it from the bundled GGUF lists ``<|im_start|>``
    and ``<|endoftext|>`` there, while ``<|im_end|>`` is only in
    ``added_tokens_decoder``. Added tokens not marked special are ordinary
    vocabulary to transformers and llama.cpp alike (llama.cpp's
    ``parse_special=false`` also still matches its user-defined tokens), and
    are read from contents as they are elsewhere. The unknown token is left
    out: plain text gives it too, for a character a tokenizer without byte
    fallback cannot spell.
    """
    ids = {int(token) for token in getattr(tokenizer, "all_special_ids", None) or ()}
    try:
        added = tokenizer.added_tokens_decoder or {}
    except (AttributeError, NotImplementedError):  # not a transformers tokenizer
        added = {}
    ids.update(int(index) for index, token in added.items() if getattr(token, "special", False))
    ids.discard(getattr(tokenizer, "unk_token_id", None))
    return frozenset(ids)


def _dtype_name(dtype: object) -> str:
    """``torch.bfloat16`` -> ``bfloat16``, the label for an unquantized model."""
    return str(dtype).removeprefix("torch.")
