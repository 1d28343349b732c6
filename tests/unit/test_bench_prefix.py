"""``kzero bench prefix`` without servers: the workload it sends, the turns it chains,
and the report's arithmetic on scripted samples."""

from __future__ import annotations

import asyncio
import collections
import json
import re

import httpx
import pytest

from bench.cli import build_parser
from bench.harness.metrics import parse
from bench.prefix import TurnResult, prompt_counters, run_chat_batch
from bench.prefix_report import (
    ColdRun,
    MetricsDelta,
    TurnSample,
    cold_ratio,
    counter_delta,
    metrics_totals,
    ratios,
    summarize,
    summarize_cold,
)
from bench.prefix_workload import (
    FOLLOW_UPS,
    SYSTEM_PROMPT,
    ChatBatch,
    PrefixWorkload,
    cold_conversation,
    conversation,
    messages,
    request_body,
    warming_conversations,
)
from bench.report import MIN_SAMPLES_FOR_P95

# ---- the workload ----------------------------------------------------------------------


def test_system_prompt_is_varied_text_of_about_a_thousand_tokens():
    words = re.findall(r"[a-z']+", SYSTEM_PROMPT.lower())
    # 1,031 SmolLM2 tokens for 832 words; the word count stands in for the tokenizer.
    assert 750 <= len(words) <= 900
    counts = collections.Counter(words)
    assert len(counts) > 350
    # Text, not a repeated word: the commonest word ("the") is under a tenth.
    assert counts.most_common(1)[0][1] < len(words) / 10


def test_every_conversation_opens_with_its_own_order_and_never_repeats_a_turn():
    chat = conversation(7, 3)
    assert len(chat.user_turns) == 3
    assert "LOS-" in chat.user_turns[0]
    assert len(set(chat.user_turns)) == 3
    assert chat.user_turns[1:] == (FOLLOW_UPS[7 % len(FOLLOW_UPS)], FOLLOW_UPS[8 % len(FOLLOW_UPS)])


def test_turns_are_bounded_by_the_follow_ups():
    conversation(0, len(FOLLOW_UPS) + 1)
    with pytest.raises(ValueError):
        conversation(0, len(FOLLOW_UPS) + 2)
    with pytest.raises(ValueError):
        conversation(0, 0)


def test_schedule_gives_every_batch_conversations_of_its_own():
    load = PrefixWorkload(conversations=6, turns=3, rounds=3, concurrency=(1, 4))
    batches = list(load.schedule())
    assert [(b.round_index, b.concurrency) for b in batches] == [
        (r, c) for r in range(3) for c in (1, 4)
    ]
    assert all(len(b.conversations) == 6 for b in batches)
    openings = [chat.user_turns[0] for b in batches for chat in b.conversations]
    warming = [chat.user_turns[0] for chat in warming_conversations(3)]
    cold = [cold_conversation(i).user_turns[0] for i in range(3)]
    everything = openings + warming + cold
    # No conversation comes back: a server can only reuse the system prompt and
    # the conversation's own history.
    assert len(set(everything)) == len(everything) == 36 + 3 + 3


def test_each_request_is_system_prompt_then_the_chat_so_far_then_the_new_turn():
    chat = messages("POLICY", [("q1", "a1"), ("q2", None)], "q3")
    assert chat == [
        {"role": "system", "content": "POLICY"},
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "q3"},
    ]


def test_requests_are_greedy_streams_that_ask_for_usage():
    body = request_body("m", [{"role": "user", "content": "hi"}], 24)
    assert body["temperature"] == 0
    assert body["max_tokens"] == 24
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["repeat_penalty"] == 1.0
    # llama-server keeps its default prompt cache: the body must not turn it off.
    assert "cache_prompt" not in body


# ---- the chats as a client runs them -----------------------------------------------------


def _sse(answer: str, prompt_tokens: int, cached: int | None) -> bytes:
    usage: dict[str, object] = {"prompt_tokens": prompt_tokens, "completion_tokens": 2}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"choices": [{"index": 0, "delta": {"content": answer}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
        {"choices": [], "usage": usage},
    ]
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


async def test_turns_carry_the_servers_own_answers_and_levels_cap_conversations_in_flight():
    seen: list[list[dict[str, str]]] = []
    in_flight = 0
    most = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        chat = json.loads(request.content)["messages"]
        seen.append(chat)
        await asyncio.sleep(0.01)
        in_flight -= 1
        answer = f"answer to {chat[-1]['content'][:12]}"
        return httpx.Response(200, content=_sse(answer, len(chat) * 100, 90))

    load = PrefixWorkload(conversations=5, turns=2, rounds=1, concurrency=(2,))
    batch = ChatBatch(0, 2, tuple(conversation(k, 2) for k in range(5)))
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        samples = await run_chat_batch(client, "http://server", "kzero", load, batch)

    assert most == 2
    assert len(samples) == 10
    assert all(s.completed and s.cached_tokens == 90 and s.ttft_s is not None for s in samples)
    second_turns = [chat for chat in seen if len(chat) == 4]
    assert len(second_turns) == 5
    for chat in second_turns:
        assert chat[0] == {"role": "system", "content": SYSTEM_PROMPT}
        assert chat[2] == {"role": "assistant", "content": f"answer to {chat[1]['content'][:12]}"}


def test_cached_tokens_are_none_when_usage_has_no_details():
    plain = TurnResult(0.1, "x", {"prompt_tokens": 5, "completion_tokens": 1}, 1, True, None)
    detailed = TurnResult(
        0.1,
        "x",
        {"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 4}},
        1,
        True,
        None,
    )
    no_usage = TurnResult(0.1, "x y", None, 2, True, None)
    assert plain.cached_tokens is None
    assert detailed.cached_tokens == 4
    assert no_usage.prompt_tokens is None and no_usage.completion_tokens == 2


def test_kzero_prompt_counters_are_read_by_source():
    page = (
        "# TYPE kzero_prompt_tokens_cached counter\n"
        'kzero_prompt_tokens_cached_total{model_name="m",backend="llamacpp",source="memory"} 30\n'
        'kzero_prompt_tokens_cached_total{model_name="m",backend="llamacpp",source="disk"} 5\n'
        "# TYPE kzero_prompt_tokens_computed counter\n"
        'kzero_prompt_tokens_computed_total{model_name="m",backend="llamacpp"} 70\n'
    )
    cached, computed = prompt_counters(parse(page))
    assert cached == {"memory": 30.0, "disk": 5.0}
    assert computed == 70.0


# ---- the report --------------------------------------------------------------------------


def turn(
    setup: str,
    ttft: float | None,
    *,
    level: int = 1,
    round_index: int = 0,
    turn_index: int = 0,
    prompt: int | None = 1000,
    cached: int | None = None,
    completed: bool = True,
) -> TurnSample:
    return TurnSample(setup, level, round_index, 0, turn_index, ttft, prompt, cached, 24, completed)


def test_summary_splits_first_turns_from_later_ones_and_sums_cached_tokens():
    samples = [
        turn("kzero", 1.0, turn_index=0, cached=0),
        turn("kzero", 3.0, turn_index=0, cached=0),
        turn("kzero", 0.2, turn_index=1, prompt=1100, cached=1000),
        turn("kzero", 0.4, turn_index=2, prompt=1200, cached=1100),
    ]
    [s] = summarize(samples)
    assert s.ttft_p50_s == pytest.approx(0.7)
    assert s.first_turn_ttft_p50_s == pytest.approx(2.0)
    assert s.later_turns_ttft_p50_s == pytest.approx(0.3)
    assert s.ttft_p95_s is None  # too few requests
    assert s.cached_tokens == 2100
    assert s.cached_share == pytest.approx(2100 / 4300)
    assert (s.completed, s.requests) == (4, 4)


def test_p95_once_there_are_enough_requests():
    samples = [turn("kzero", i / 100) for i in range(1, MIN_SAMPLES_FOR_P95 + 1)]
    [s] = summarize(samples)
    assert s.ttft_p95_s == pytest.approx(0.1905)


def test_a_server_that_reports_no_cached_tokens_shows_none_not_zero():
    [s] = summarize([turn("llama_cpp.server", 0.5, prompt=None, cached=None)])
    assert s.cached_tokens is None and s.cached_share is None
    assert s.prompt_tokens_p50 is None


def test_requests_without_a_first_token_are_counted_but_not_timed():
    [s] = summarize([turn("x", None, completed=False), turn("x", 2.0)])
    assert s.ttft_p50_s == 2.0
    assert (s.timed, s.completed, s.requests) == (1, 1, 2)


def test_ratios_are_kzero_over_each_peer_with_a_paired_median_over_rounds():
    samples = [
        turn("kzero", 2.0, round_index=0),
        turn("kzero", 1.0, round_index=1),
        turn("kzero", 3.0, round_index=2),
        turn("llama-server", 1.0, round_index=0),
        turn("llama-server", 1.0, round_index=1),
        turn("llama-server", 1.0, round_index=2),
        turn("llama_cpp.server", 4.0, round_index=0),
    ]
    items = {r.pair: r for r in ratios(summarize(samples), samples)}
    assert set(items) == {"kzero/llama-server", "kzero/llama_cpp.server"}
    assert items["kzero/llama-server"].ttft_p50 == pytest.approx(2.0)
    assert items["kzero/llama-server"].paired_ttft_p50 == pytest.approx(2.0)
    # Only round 0 has both: 2.0 / 4.0.
    assert items["kzero/llama_cpp.server"].paired_ttft_p50 == pytest.approx(0.5)
    assert items["kzero/llama_cpp.server"].ttft_p50 == pytest.approx(0.5)


def test_ratios_are_per_concurrency_level():
    samples = [
        turn("kzero", 1.0, level=1),
        turn("llama-server", 2.0, level=1),
        turn("kzero", 4.0, level=4),
        turn("llama-server", 2.0, level=4),
    ]
    by_level = {r.concurrency: r.ttft_p50 for r in ratios(summarize(samples), samples)}
    assert by_level == {1: pytest.approx(0.5), 4: pytest.approx(2.0)}


def test_counter_deltas_count_a_new_source_from_zero():
    assert counter_delta({"memory": 10.0}, {"memory": 25.0, "disk": 3.0}) == {
        "memory": 15.0,
        "disk": 3.0,
    }


def test_metrics_totals_sum_rounds_by_source():
    deltas = [
        MetricsDelta("kzero", 1, 0, {"memory": 100.0}, 50.0),
        MetricsDelta("kzero", 1, 1, {"memory": 200.0, "copy": 10.0}, 40.0),
        MetricsDelta("kzero", 4, 0, {}, 90.0),
    ]
    totals = {t.concurrency: t for t in metrics_totals(deltas)}
    assert totals[1].cached_by_source == {"memory": 300.0, "copy": 10.0}
    assert totals[1].computed == 90.0
    assert totals[1].cached_share == pytest.approx(310 / 400)
    assert totals[4].cached == 0.0 and totals[4].cached_share == 0.0


def cold(state: str, round_index: int, ttft: float, ready: float = 2.0) -> ColdRun:
    return ColdRun(state, round_index, ready, ttft, ready + ttft + 0.01, 1080, 0, 0.0, True)


def test_cold_starts_compare_warmed_with_empty_directories():
    runs = [
        cold("with", 0, 0.5, ready=2.2),
        cold("without", 0, 4.0),
        cold("without", 1, 3.0),
        cold("with", 1, 1.5, ready=2.2),
        cold("with", 2, 1.0, ready=2.2),
        cold("without", 2, 4.0),
    ]
    summaries = {s.state: s for s in summarize_cold(runs)}
    assert summaries["with"].ttft_p50_s == 1.0
    assert summaries["without"].ttft_p50_s == 4.0
    assert summaries["with"].runs == 3
    ratio = cold_ratio(runs)
    assert ratio is not None
    assert ratio.ttft_p50 == pytest.approx(0.25)
    # Per round: 0.125, 0.5, 0.25.
    assert ratio.paired_ttft == pytest.approx(0.25)
    assert ratio.ready_p50 == pytest.approx(1.1)


def test_cold_ratio_needs_both_states():
    assert cold_ratio([cold("without", 0, 4.0)]) is None


# ---- the command -------------------------------------------------------------------------


def test_prefix_is_a_bench_subcommand_with_the_briefs_defaults():
    args = build_parser().parse_args(["prefix"])
    assert args.subcommand == "prefix"
    assert args.setups == ("kzero", "llama-server", "llama_cpp.server")
    assert (args.conversations, args.turns, args.concurrency) == (6, 3, (1, 4))
    assert args.max_tokens == 24
    assert args.cold_rounds == 3


def test_setups_are_checked_and_kept_in_a_fixed_order():
    args = build_parser().parse_args(["prefix", "--setups", "llama-server,kzero", "--rounds", "0"])
    assert args.setups == ("kzero", "llama-server")
    assert args.rounds == 0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prefix", "--setups", "vllm"])
