"""Fake ``vllm.v1.engine.async_llm.AsyncLLM``: a deterministic toy engine.

It keeps the contract kzero relies on: ``generate()`` is an async generator of
``RequestOutput`` honouring ``max_tokens``, stop strings (with the text that
could start a stop string held back, as vLLM does), DELTA / CUMULATIVE /
FINAL_ONLY output kinds and the model length; and ``abort()``,
``check_health()``, ``errored`` and ``shutdown()``. It loads like vLLM too: it
needs ``config.json``, refuses ``auto_map`` models without
``trust_remote_code`` and, with ``load_format="safetensors"``, loads no pickle
weights. Its prefix cache keeps full blocks of computed token ids and reports
hits in ``num_cached_tokens``, as vLLM's does (``PrefixCache``).

The "model" answers with words picked from the prompt's token ids (greedy,
``temperature == 0``) or from a generator seeded by ``seed``, one byte per
token, and ends with EOS after ``REPLY_WORDS`` words. Its tokenizer
(``FakeTokenizer``) is byte-level with special tokens, and honours
``split_special_tokens`` as a Hugging Face fast tokenizer does. Test hooks:
``created`` (every engine built), ``kill()``, ``step_delay``, ``abort_calls``,
``requests``, ``finished`` and ``prefix_cache``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.sampling_params import RequestOutputKind, SamplingParams
from vllm.v1.engine.exceptions import EngineDeadError

PAD, BOS, EOS = 0, 1, 2
BYTE_OFFSET = 3  # byte b is token b + 3
# Added tokens after the 256 byte tokens: ChatML's turn markers, and one added
# token not marked special (ordinary vocabulary to transformers).
IM_START, IM_END, THINK = 259, 260, 261
WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
)  # fmt: skip
REPLY_WORDS = 12
# The model's own template: plain-text role markers, and the role check HF
# templates make with raise_exception().
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role not in ('system', 'user', 'assistant') %}"
    "{{ raise_exception('unsupported role ' ~ m.role) }}{% endif %}"
    "<|{{ m.role }}|>{{ m.content }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# ChatML, whose turn markers are special tokens (Qwen, SmolLM2).
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class AddedToken:
    """``tokenizers.AddedToken``, the two fields that matter here."""

    content: str
    special: bool = True


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


class FakeTokenizer:
    """Byte-level: ids 0-2 are PAD, BOS and EOS, byte ``b`` is ``b + 3``, then added tokens.

    Text is split on the added tokens first, as a Hugging Face fast tokenizer
    does; ``split_special_tokens=True`` leaves the special ones as text (the
    ``encode_special_tokens`` flag of tokenizers' ``AddedVocabulary``).
    ``all_special_ids`` lists only the named special tokens, as in transformers:
    ``<|im_start|>`` and ``<|im_end|>`` are in ``added_tokens_decoder`` alone (as
    ``<|im_end|>`` is in SmolLM2's tokenizer built from its GGUF).
    """

    bos_token_id = BOS
    eos_token_id = EOS
    pad_token_id = PAD
    unk_token_id = None
    added_tokens_decoder: ClassVar[dict[int, AddedToken]] = {
        PAD: AddedToken("<pad>"),
        BOS: AddedToken("<s>"),
        EOS: AddedToken("</s>"),
        IM_START: AddedToken("<|im_start|>"),
        IM_END: AddedToken("<|im_end|>"),
        THINK: AddedToken("<think>", special=False),
    }
    special_tokens_map: ClassVar[dict[str, str]] = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
    }
    all_special_ids: ClassVar[list[int]] = [BOS, EOS, PAD]

    def __init__(self) -> None:
        self.chat_template: str | None = CHAT_TEMPLATE
        self._ids = {token.content: index for index, token in self.added_tokens_decoder.items()}
        self._all_added = _alternation(self._ids)
        self._not_special = _alternation(
            token.content for token in self.added_tokens_decoder.values() if not token.special
        )

    def encode(
        self, text: str, add_special_tokens: bool = True, split_special_tokens: bool = False
    ) -> list[int]:
        pattern = self._not_special if split_special_tokens else self._all_added
        ids = [BOS] if add_special_tokens else []
        position = 0
        for match in pattern.finditer(text):
            ids += _bytes(text[position : match.start()])
            ids.append(self._ids[match.group()])
            position = match.end()
        return ids + _bytes(text[position:])

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        data = bytearray()
        for index in ids:
            token = self.added_tokens_decoder.get(index)
            if token is None:
                data.append(index - BYTE_OFFSET)
            elif not (token.special and skip_special_tokens):
                data += token.content.encode()
        return data.decode("utf-8", errors="replace")

    def apply_chat_template(
        self,
        messages: list[dict[str, str]],
        tokenize: bool = True,
        add_generation_prompt: bool = False,
        **kwargs: Any,
    ) -> str | list[int]:
        """Renders ``chat_template`` the way transformers does: Jinja's immutable sandbox,
        ``trim_blocks`` and ``lstrip_blocks``, ``raise_exception`` and the special tokens."""
        if not self.chat_template:
            raise ValueError(
                "Cannot use chat template functions because tokenizer.chat_template is not set"
            )
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = _raise_exception
        text = environment.from_string(self.chat_template).render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            **self.special_tokens_map,
            **kwargs,
        )
        return self.encode(text, add_special_tokens=False) if tokenize else text


def _alternation(tokens: Iterable[str]) -> re.Pattern[str]:
    # Longest first: at one position the longest added token wins, as in
    # tokenizers' leftmost-longest matching.
    ordered = sorted(tokens, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, ordered)) or "(?!)")


def _bytes(text: str) -> list[int]:
    return [b + BYTE_OFFSET for b in text.encode("utf-8")]


class PrefixCache:
    """vLLM's automatic prefix caching, as a request sees it.

    KV is kept per full block of ``block_size`` token ids and found again by a
    hash chained over the block and every block before it
    (``hash_block_tokens`` in vllm/v1/core/kv_cache_utils.py at v0.11.0), so a
    block is reused only after the very same prefix. A prompt reuses its
    longest run of cached blocks from the start, but never all of it: vLLM
    recomputes the last prompt token for its logits, so at most ``len - 1``
    tokens (``KVCacheManager.get_computed_blocks``), in whole blocks. Nothing is
    evicted here; vLLM evicts least recently used free blocks when memory runs
    out.
    """

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._blocks: set[bytes] = set()

    def _hashes(self, token_ids: Sequence[int], limit: int) -> list[bytes]:
        hashes: list[bytes] = []
        parent = b""
        for end in range(self.block_size, limit + 1, self.block_size):
            block = token_ids[end - self.block_size : end]
            parent = hashlib.sha256(parent + repr(tuple(block)).encode()).digest()
            hashes.append(parent)
        return hashes

    def lookup(self, prompt_ids: Sequence[int]) -> int:
        """Prompt tokens whose KV is cached: whole blocks, at most all but the last token."""
        cached = 0
        for block_hash in self._hashes(prompt_ids, len(prompt_ids) - 1):
            if block_hash not in self._blocks:
                break
            cached += self.block_size
        return cached

    def insert(self, computed_ids: Sequence[int]) -> None:
        """Keep the full blocks of tokens whose KV has been computed."""
        self._blocks.update(self._hashes(computed_ids, len(computed_ids)))


class TorchDtype:
    """Prints like ``torch.bfloat16``, which is all kzero reads of a dtype."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return f"torch.{self.name}"


@dataclass
class ModelConfig:
    max_model_len: int
    quantization: str | None
    dtype: TorchDtype


@dataclass
class RequestRecord:
    prompt_token_ids: list[int]
    params: SamplingParams


@dataclass
class FinishedRecord:
    text: str
    num_tokens: int
    finish_reason: str


def reply_tokens(prompt_ids: list[int], params: SamplingParams) -> list[int]:
    """The whole answer the toy model gives, ending with EOS."""
    if params.temperature == 0:
        start = sum(prompt_ids)
        words = [WORDS[(start + 5 * k) % len(WORDS)] for k in range(REPLY_WORDS)]
    else:
        rng = random.Random(params.seed)
        words = [rng.choice(WORDS) for _ in range(REPLY_WORDS)]
    return [b + BYTE_OFFSET for b in " ".join(words).encode()] + [EOS]


class AsyncLLM:
    created: ClassVar[list[AsyncLLM]] = []

    def __init__(self, engine_args: AsyncEngineArgs, model_config: ModelConfig) -> None:
        self.engine_args = engine_args
        self.model_config = model_config
        self.created_on_loop = _loop_running()
        self.tokenizer = FakeTokenizer()
        # vLLM turns prefix caching on unless told not to (EngineArgs).
        self.prefix_cache = (
            PrefixCache(engine_args.block_size or 16)
            if engine_args.enable_prefix_caching is not False
            else None
        )
        self.step_delay = 0.0
        self.requests: dict[str, RequestRecord] = {}
        self.finished: dict[str, FinishedRecord] = {}
        self.abort_calls: list[str] = []
        self.shutdown_calls = 0
        self._running: set[str] = set()
        self._abort_pending: set[str] = set()
        self._dead = False
        self._shut_down = False
        AsyncLLM.created.append(self)

    @classmethod
    def from_engine_args(
        cls, engine_args: AsyncEngineArgs, start_engine_loop: bool = True, **kwargs: Any
    ) -> AsyncLLM:
        root = Path(engine_args.model)
        config_file = root / "config.json"
        if not config_file.is_file():
            raise OSError(f"{root} does not appear to have a file named config.json.")
        config = json.loads(config_file.read_text())
        if "auto_map" in config and not engine_args.trust_remote_code:
            raise ValueError(
                "The repository contains custom code which must be executed to correctly "
                "load the model. Please pass the argument `trust_remote_code=True`."
            )
        patterns = ["*.safetensors"]
        if engine_args.load_format == "auto":
            patterns += ["*.bin", "*.pt"]
        if not any(any(root.glob(pattern)) for pattern in patterns):
            raise RuntimeError(f"Cannot find any model weights with `{root}`")
        derived_len = int(config.get("max_position_embeddings", 2048))
        max_len = engine_args.max_model_len or derived_len
        if max_len > derived_len:
            raise ValueError(
                f"User-specified max_model_len ({max_len}) is greater than the derived "
                f"max_model_len ({derived_len})."
            )
        dtype = engine_args.dtype
        if dtype == "auto":
            dtype = config.get("torch_dtype", "bfloat16")
        model_config = ModelConfig(
            max_model_len=max_len,
            quantization=config.get("quantization_config", {}).get("quant_method"),
            dtype=TorchDtype({"half": "float16", "float": "float32"}.get(dtype, dtype)),
        )
        return cls(engine_args, model_config)

    @property
    def errored(self) -> bool:
        return self._dead or self._shut_down

    @property
    def dead_error(self) -> BaseException:
        return EngineDeadError()

    def kill(self) -> None:
        """Test hook: the engine core process dies."""
        self._dead = True

    def get_tokenizer(self) -> FakeTokenizer:
        return self.tokenizer

    async def check_health(self) -> None:
        if self.errored:
            raise self.dead_error

    async def abort(self, request_id: str | Iterable[str], internal: bool = False) -> None:
        ids = [request_id] if isinstance(request_id, str) else list(request_id)
        if not internal:
            self.abort_calls.extend(ids)
        self._abort_pending.update(i for i in ids if i in self._running)

    def shutdown(self, timeout: float | None = None) -> None:
        self.shutdown_calls += 1
        self._shut_down = True

    async def generate(
        self,
        prompt: Any,
        sampling_params: SamplingParams,
        request_id: str,
        **kwargs: Any,
    ) -> AsyncGenerator[RequestOutput, None]:
        if self.errored:
            raise EngineDeadError()
        if not isinstance(prompt, dict) or "prompt_token_ids" not in prompt:
            raise TypeError("this fake engine takes only TokensPrompt inputs")
        prompt_ids = list(prompt["prompt_token_ids"])
        limit = self.model_config.max_model_len
        if len(prompt_ids) >= limit:
            raise ValueError(f"The prompt (length {len(prompt_ids)}) is too long ({limit}).")
        if request_id in self._running:
            raise ValueError(f"Request id {request_id} already running.")
        params = sampling_params
        self.requests[request_id] = RequestRecord(prompt_ids, params)
        self._running.add(request_id)
        cached = 0
        if self.prefix_cache is not None:
            # The prefill: what the cache holds is reused, the rest computed
            # and cached for the requests that follow.
            cached = self.prefix_cache.lookup(prompt_ids)
            self.prefix_cache.insert(prompt_ids)
        try:
            async for output in self._decode(request_id, prompt_ids, params, cached):
                yield output
        except (asyncio.CancelledError, GeneratorExit):
            await self.abort(request_id, internal=True)
            raise
        finally:
            self._running.discard(request_id)
            self._abort_pending.discard(request_id)

    async def _decode(
        self, request_id: str, prompt_ids: list[int], params: SamplingParams, cached: int
    ) -> AsyncGenerator[RequestOutput, None]:
        planned = reply_tokens(prompt_ids, params)
        room = self.model_config.max_model_len - len(prompt_ids)
        max_tokens = min(params.max_tokens or room, room)
        stops = list(params.stop or [])
        hold = max((len(s) for s in stops), default=1) - 1
        text = ""
        generated: list[int] = []
        sent_text = sent_ids = 0
        while True:
            await asyncio.sleep(self.step_delay)
            if self._dead:
                raise EngineDeadError()
            finish: str | None = None
            visible = text
            if request_id in self._abort_pending:
                finish = "abort"
            else:
                token = planned[len(generated)]
                generated.append(token)
                if token == EOS:
                    finish = "stop"
                else:
                    text += self.tokenizer.decode([token])
                    visible = text
                    hits = [text.find(s) for s in stops if s in text]
                    if hits:
                        finish, visible = "stop", text[: min(hits)]
                    elif len(generated) >= max_tokens:
                        finish = "length"
                    else:
                        visible = text[: max(sent_text, len(text) - hold)]
            if finish is not None:
                self.finished[request_id] = FinishedRecord(visible, len(generated), finish)
            if params.output_kind is RequestOutputKind.DELTA:
                out_text, out_ids = visible[sent_text:], generated[sent_ids:]
            elif params.output_kind is RequestOutputKind.CUMULATIVE or finish is not None:
                out_text, out_ids = visible, list(generated)
            else:
                continue
            sent_text, sent_ids = len(visible), len(generated)
            if finish is not None and self.prefix_cache is not None:
                # Generated tokens fill blocks too; the last one's KV is never
                # computed (no step follows it).
                self.prefix_cache.insert(prompt_ids + generated[:-1])
            completion = CompletionOutput(0, out_text, out_ids, finish_reason=finish)
            yield RequestOutput(
                request_id,
                prompt_ids,
                [completion],
                finished=finish is not None,
                num_cached_tokens=cached,
            )
            if finish is not None:
                return


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
