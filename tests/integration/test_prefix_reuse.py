"""Prefix reuse on the real model: the same answers, token for token, as without it.

A reused prefix must never change an answer, and must never be another
conversation's: llama-server's host-RAM prompt cache has an open report
(llama.cpp#27148) of an unrelated conversation restored into a new request
under concurrent load, invisible to clients because ``cached_tokens`` read 0.
So every answer here is checked against the same conversation run alone on an
engine without reuse, with many concurrent conversations whose prompts differ
by a word at the end, in the middle or near the start of a long shared prefix.
And after every run, each sequence's KV cells are checked to hold exactly as
many positions as the engine believes it has tokens for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random

import httpx
import pytest

from bench.harness.metrics import scrape, value
from bench.harness.process import PredictorProcess
from predictor.backends.base import SamplingOptions
from predictor.backends.llamacpp import LlamaCppBackend, PrefixCacheSettings
from predictor.default_model import default_model_path

pytestmark = pytest.mark.integration

MAX_TOKENS = 16
GREEDY = SamplingOptions(max_tokens=MAX_TOKENS, temperature=0.0)
POLICY = (
    "You are the support assistant of Northwind Printers. Answer in two sentences at most. "
    "Never promise refunds; point customers to the returns page instead. Printers covered: "
    "the LX-100 inkjet, the LX-200 laser and the LX-300 office multifunction device. "
    "Warranty is two years from the date of purchase for every model. "
) * 6


def system_prompt(variant: int) -> str:
    """Near-identical system prompts: one word differs, at the end, the middle or the start."""
    words = POLICY.split()
    where = [len(words), len(words) // 2, 3][variant % 3]
    return " ".join([*words[:where], f"Region-{variant}.", *words[where:]])


def chat(variant: int, question: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": system_prompt(variant)},
        {"role": "user", "content": f"Question {question}: how do I clean the LX-{variant}00?"},
    ]


RAM = 64 << 20  # a host-memory budget for given-up prefixes (prefix_ram)


async def load(
    *, reuse: bool, parallel: int = 4, flash_attn: bool = False, ram_bytes: int = 0
) -> LlamaCppBackend:
    backend = LlamaCppBackend(
        default_model_path(),
        n_ctx=1024,
        n_threads=None,
        n_batch=512,
        n_parallel=parallel,
        flash_attn=flash_attn,
        prefix_cache=PrefixCacheSettings(ram_bytes=ram_bytes) if reuse else None,
    )
    await backend.load()
    return backend


async def answer(
    backend: LlamaCppBackend, request_id: str, messages: list[dict[str, str]]
) -> tuple[str, int]:
    """The greedy answer and the prompt tokens the engine reported reused."""
    text, cached, _ = await answer_with_source(backend, request_id, messages)
    return text, cached


async def answer_with_source(
    backend: LlamaCppBackend, request_id: str, messages: list[dict[str, str]]
) -> tuple[str, int, str | None]:
    """The greedy answer, the prompt tokens reported reused and where they came from."""
    prompt = backend.render_chat(messages)
    text: list[str] = []
    cached = 0
    source = None
    async for chunk in backend.generate(request_id, prompt, GREEDY):
        cached += chunk.cached_tokens
        source = chunk.cache_source or source
        text.append(chunk.text)
    assert cached < len(prompt.token_ids)
    return "".join(text), cached, source


async def assert_cells_match_bookkeeping(backend: LlamaCppBackend) -> None:
    engine = backend._engine
    assert engine is not None
    # A request whose client left is freed before the engine's next step, after
    # the client has returned: wait until nothing runs, so no step is half done
    # (a step appends its tokens before its decode writes their cells).
    for _ in range(200):
        if not engine._active and not engine._pending:
            break
        await asyncio.sleep(0.05)
    assert not engine._active and not engine._pending
    lib, memory = engine._lib, engine._memory
    for slot in engine._slots:
        positions = int(lib.llama_memory_seq_pos_max(memory, slot.seq_id)) + 1
        assert positions == len(slot.tokens), (slot.seq_id, positions, len(slot.tokens))


async def multi_turn(backend: LlamaCppBackend, variant: int, turns: int) -> list[tuple[str, int]]:
    messages = [chat(variant, 0)[0]]
    results = []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"Turn {turn}: is the LX-{variant}00 noisy?"})
        text, cached = await answer(backend, f"c{variant}t{turn}", messages)
        results.append((text, cached))
        messages.append({"role": "assistant", "content": text})
    return results


async def test_multi_turn_chats_answer_exactly_as_without_reuse_and_report_the_reuse():
    plain = await load(reuse=False)
    reusing = await load(reuse=True)
    try:
        for variant in range(3):
            expected = await multi_turn(plain, variant, turns=3)
            got = await multi_turn(reusing, variant, turns=3)
            assert [text for text, _ in got] == [text for text, _ in expected]
            assert all(cached == 0 for _, cached in expected)
            # Later turns reuse the earlier turns; later conversations the shared words.
            assert all(cached > 0 for _, cached in got[1:]), got
        await assert_cells_match_bookkeeping(reusing)
    finally:
        await plain.shutdown()
        await reusing.shutdown()


async def test_flash_attention_on_turns_reuse_off():
    """With flash attention, reused KV would differ from a fresh prefill's: never reused."""
    backend = await load(reuse=True, flash_attn=True)
    try:
        engine = backend._engine
        assert engine is not None
        assert engine._kv_settings.flash_attn_type == engine._lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
        assert not engine.prefix_reuse
        got = await multi_turn(backend, 0, turns=2)
        assert [cached for _, cached in got] == [0, 0]
        assert all(text for text, _ in got)
        # The cells of a finished request are dropped, as with --prefix_cache false.
        await assert_cells_match_bookkeeping(backend)
        assert all(not slot.tokens for slot in engine._slots)
    finally:
        await backend.shutdown()


async def test_concurrent_near_identical_prefixes_never_mix_conversations():
    plain = await load(reuse=False)
    reusing = await load(reuse=True)
    requests = [(variant, question) for variant in range(6) for question in range(2)]
    try:
        alone = {key: (await answer(plain, f"a{key}", chat(*key)))[0] for key in requests}
        order = random.Random(7).sample(requests, len(requests))

        async def staggered(index: int, key: tuple[int, int]) -> tuple[str, int]:
            await asyncio.sleep(0.05 * index)  # join while others prefill and decode
            return await answer(reusing, f"r{key}", chat(*key))

        together = await asyncio.gather(*(staggered(i, key) for i, key in enumerate(order)))
        for key, (text, _) in zip(order, together, strict=True):
            assert text == alone[key], key
        assert sum(cached for _, cached in together) > 0
        await assert_cells_match_bookkeeping(reusing)
    finally:
        await plain.shutdown()
        await reusing.shutdown()


async def test_prefixes_given_up_by_their_sequence_come_back_from_host_memory():
    """Three conversations on two sequences: each one's next turn finds its slot
    taken, and gets its history back from host memory, answering as without reuse."""
    plain = await load(reuse=False, parallel=2)
    reusing = await load(reuse=True, parallel=2, ram_bytes=RAM)
    without_ram = await load(reuse=True, parallel=2)
    try:
        histories: dict[int, list[dict[str, str]]] = {v: [chat(v, 0)[0]] for v in range(3)}
        for turn in range(2):
            for variant in range(3):
                messages = histories[variant]
                messages.append({"role": "user", "content": f"Turn {turn}: is it noisy?"})
                expected, _ = await answer(plain, f"p{variant}{turn}", messages)
                text, cached, source = await answer_with_source(
                    reusing, f"r{variant}{turn}", messages
                )
                _, cached_without, _ = await answer_with_source(
                    without_ram, f"w{variant}{turn}", messages
                )
                assert text == expected, (variant, turn)
                if turn == 1:
                    # Two other conversations ran since: its cells were given up.
                    assert source == "ram" and cached > 200, (variant, cached, source)
                    assert cached_without < cached
                messages.append({"role": "assistant", "content": text})
        engine = reusing._engine
        assert engine is not None and 0 < engine._ram.bytes_used <= RAM
        await assert_cells_match_bookkeeping(reusing)
    finally:
        for backend in (plain, reusing, without_ram):
            await backend.shutdown()


async def test_a_block_llama_cpp_refuses_is_dropped_and_the_prompt_computed():
    """A host-memory entry llama.cpp will not load (here: cut short) is never half
    used: the request computes its prompt and answers as without reuse."""
    plain = await load(reuse=False, parallel=1)
    reusing = await load(reuse=True, parallel=1, ram_bytes=RAM)
    try:
        first, second = chat(0, 0), chat(2, 0)  # they part after a few tokens
        await answer(reusing, "first", first)
        await answer(reusing, "second", second)  # takes the one sequence: first goes to RAM
        engine = reusing._engine
        assert engine is not None and len(engine._ram) == 1
        ((key, entry),) = engine._ram._entries.items()
        engine._ram._entries[key] = dataclasses.replace(entry, block=entry.block[:-4096])
        again = [*first[:1], {"role": "user", "content": "And how do I reset it?"}]
        expected, _ = await answer(plain, "plain", again)
        text, cached, source = await answer_with_source(reusing, "again", again)
        assert text == expected
        assert source != "ram" and cached < 32, (cached, source)
        assert len(engine._ram) == 1  # the refused entry is gone; the second chat's came in
        assert engine.failure is None
        await assert_cells_match_bookkeeping(reusing)
    finally:
        await plain.shutdown()
        await reusing.shutdown()


async def test_a_burst_sharing_a_prefix_prefills_it_once():
    reusing = await load(reuse=True)
    try:
        results = await asyncio.gather(*(answer(reusing, f"b{q}", chat(0, q)) for q in range(4)))
        reused = sorted(cached for _, cached in results)
        # The first computes the shared prefix; the other three copy it.
        assert reused[0] == 0 and all(cached > 200 for cached in reused[1:]), reused
        await assert_cells_match_bookkeeping(reusing)
    finally:
        await reusing.shutdown()


def test_usage_and_counters_report_reused_tokens_over_http():
    name = "prefixes"
    with PredictorProcess(["--model_name", name]) as server:
        server.wait_ready(name)
        with httpx.Client(base_url=server.url, timeout=120) as client:
            before = scrape(server.url)
            usages = []
            for question in range(3):
                body = {"model": name, "messages": chat(1, question), "max_tokens": 8}
                response = client.post("/v1/chat/completions", json=body)
                assert response.status_code == 200, response.text
                usages.append(response.json()["usage"])
        after = scrape(server.url)

    cached = [usage["prompt_tokens_details"]["cached_tokens"] for usage in usages]
    assert cached[0] == 0 and cached[1] > 200 and cached[2] > 200, cached

    def delta(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert delta("kzero_prompt_tokens_cached_total") == sum(cached)
    # Only this process computed what it reused: nothing came from the (empty) volume.
    assert delta("kzero_prompt_tokens_cached_total", source="disk") == 0
    prompt = sum(usage["prompt_tokens"] for usage in usages)
    assert delta("kzero_prompt_tokens_computed_total") == prompt - sum(cached)


def test_a_conversation_whose_sequence_was_taken_is_restored_from_host_memory_over_http():
    """One sequence, two conversations taking turns: each turn finds the other's cells
    in the sequence, and its own history comes back from host memory."""
    name = "ram"
    with PredictorProcess(["--model_name", name, "--max_running_requests", "1"]) as server:
        server.wait_ready(name)
        with httpx.Client(base_url=server.url, timeout=120) as client:
            before = scrape(server.url)
            usages = []
            for question in range(2):
                for variant in (1, 2):  # prompts that part after a few words
                    body = {"model": name, "messages": chat(variant, question), "max_tokens": 4}
                    response = client.post("/v1/chat/completions", json=body)
                    assert response.status_code == 200, response.text
                    usages.append(response.json()["usage"])
        after = scrape(server.url)

    cached = [usage["prompt_tokens_details"]["cached_tokens"] for usage in usages]
    # The second shares only the template's first tokens with the first.
    assert cached[0] == 0 and cached[1] < 32 and all(c > 200 for c in cached[2:]), cached
    restored = value(after, "kzero_prompt_tokens_cached_total", source="ram") - value(
        before, "kzero_prompt_tokens_cached_total", source="ram"
    )
    assert restored == sum(cached[2:])
    assert 0 < value(after, "kzero_prefix_cache_ram_bytes") <= 256 << 20


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_random_joins_and_cancellations_keep_cells_and_bookkeeping_in_step(seed: int):
    """Requests arrive at random, share prefixes of every length and some leave mid-stream.

    A request placed in place cuts its slot's tokens back at once, before the
    next placement reads them: otherwise a later request copies a prefix the
    slot no longer holds, and llama_decode refuses the batch (the positions no
    longer follow the cells), which kills the engine.
    """
    rng = random.Random(seed)
    backend = await load(reuse=True, parallel=8, ram_bytes=RAM)
    questions = ["What is the capital of France?", "Name three colours.", "Say hi.", "2+2?"]

    async def one(index: int) -> None:
        await asyncio.sleep(rng.random())
        messages = [{"role": "user", "content": rng.choice(questions)}]
        if rng.random() < 0.3:
            messages.insert(0, {"role": "system", "content": "Be brief. " * rng.randint(1, 40)})
        prompt = backend.render_chat(messages)
        options = SamplingOptions(max_tokens=rng.randint(1, 32), temperature=0.0)
        chunks = backend.generate(f"s{seed}-{index}", prompt, options)
        try:
            async for _ in chunks:
                if rng.random() < 0.05:
                    break  # the client left
        finally:
            await chunks.aclose()

    try:
        await asyncio.gather(*(one(index) for index in range(64)))
        assert backend._engine is not None and backend._engine.failure is None
        assert await backend.healthy()
        await assert_cells_match_bookkeeping(backend)
    finally:
        await backend.shutdown()
