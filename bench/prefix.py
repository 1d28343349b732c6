"""``kzero bench prefix``: multi-turn chats behind one long system prompt, and cold starts.

Two parts, each optional:

- **Chats.** The setups (kzero, llama-server and llama_cpp.server at their
  defaults, same model and threads; optionally kzero without its host-memory
  tier or without prefix reuse) run side by side. Every round, at every
  concurrency level, each setup in turn runs the same N conversations of T
  turns; at concurrency c, c conversations proceed at once, each sending its
  next turn (system prompt, the chat so far with the server's own answers, the
  new user turn) as soon as the previous answer has ended. Reported per setup
  and level: TTFT median and p95, the ratios kzero / each peer, the cached
  tokens that ``usage`` reports, and the moves of kzero's prompt-token counters.
- **Cold starts.** Each round starts ``kzero serve`` twice, interleaved: with a
  prefix directory warmed by an earlier kzero process (which served the system
  prompt several times and then exited on SIGTERM), and with an empty one. Each
  start's first request is the system prompt plus one user turn; reported are
  its TTFT, the time to ready, and their ratios warmed / empty.

Servers are child processes stopped on the way out (SIGTERM, then SIGKILL),
also when the bench is interrupted or terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.arguments import (
    add_model_argument,
    add_ready_timeout_argument,
    add_threads_argument,
)
from bench.facts import machine_facts
from bench.harness.metrics import Samples, scrape, value
from bench.harness.process import sigterm_as_exit
from bench.harness.sse import StreamTally, aevents
from bench.llama_server import (
    LlamaServerMissing,
    add_llama_server_arguments,
    llama_server_base_command,
    llama_server_version,
    locate_llama_server,
)
from bench.prefix_report import (
    ColdRun,
    MetricsDelta,
    TurnSample,
    WarmedDirectory,
    cold_ratio,
    counter_delta,
    format_cold,
    format_metrics,
    format_ratios,
    format_table,
    metrics_totals,
    notes,
    ratios,
    summarize,
    summarize_cold,
)
from bench.prefix_workload import (
    WARMUP_MESSAGE,
    ChatBatch,
    Conversation,
    PrefixWorkload,
    cold_conversation,
    messages,
    request_body,
    warming_conversations,
)
from bench.servers import (
    SERVED_NAME,
    StartedServer,
    launch_kzero,
    launch_llama_cpp_server,
    launch_llama_server,
)
from bench.vocab import token_counter
from predictor.cli_parsing import CommandError, positive_int, positive_ints, set_run
from predictor.cpu_quota import usable_cpu_count
from predictor.default_model import DefaultModelMissing, default_model_path

KZERO = "kzero"
KZERO_NO_RAM = "kzero-no-ram"
KZERO_NO_PREFIX_CACHE = "kzero-no-prefix-cache"
LLAMA_SERVER = "llama-server"
LLAMA_CPP_SERVER = "llama_cpp.server"
# kzero's setups and the flags each adds to its defaults.
KZERO_VARIANTS: dict[str, tuple[str, ...]] = {
    KZERO: (),
    KZERO_NO_RAM: ("--prefix_cache_ram_bytes", "0"),
    KZERO_NO_PREFIX_CACHE: ("--prefix_cache", "false"),
}
SETUPS = (KZERO, LLAMA_SERVER, LLAMA_CPP_SERVER, KZERO_NO_RAM, KZERO_NO_PREFIX_CACHE)
DEFAULT_SETUPS = (KZERO, LLAMA_SERVER, LLAMA_CPP_SERVER)
KZERO_SETUPS = tuple(KZERO_VARIANTS)
# llama_cpp.server's extra dependencies (llama-cpp-python[server]).
LLAMA_CPP_SERVER_MODULES = ("sse_starlette", "starlette_context")
# One event per token, and a few that carry none (a role, usage, [DONE]).
EVENTS_PER_TOKEN_BOUND = 2
EXTRA_EVENTS = 32
CACHED_COUNTER = "kzero_prompt_tokens_cached_total"
COMPUTED_COUNTER = "kzero_prompt_tokens_computed_total"
WARMUP_CONVERSATION = Conversation(-1, (WARMUP_MESSAGE,))

DESCRIPTION = (
    "Multi-turn chats that share a system prompt of about 1,000 tokens, against kzero, "
    "llama-server and llama_cpp.server at their defaults (same model and threads), "
    "interleaved round by round at each concurrency level: TTFT median and p95, the ratios "
    "kzero / llama-server and kzero / llama_cpp.server, the cached prompt tokens each server "
    "reports in usage, and kzero's prompt-token counters from /metrics. Then cold starts: the "
    "first request after kzero serve starts with a prefix directory warmed by an earlier "
    "process, against an empty one. Medians and ratios only; nothing passes or fails."
)


def _setups(text: str) -> tuple[str, ...]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in SETUPS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected setups among {','.join(SETUPS)}, got '{text}'")
    return tuple(name for name in SETUPS if name in names)


def _non_negative_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    set_run(parser, run)
    add_model_argument(parser)
    parser.add_argument(
        "--setups",
        type=_setups,
        default=DEFAULT_SETUPS,
        help=f"Comma-separated setups among {','.join(SETUPS)} ({KZERO_NO_RAM}: kzero with "
        f"--prefix_cache_ram_bytes 0; {KZERO_NO_PREFIX_CACHE}: kzero with --prefix_cache "
        f"false). Default: {','.join(DEFAULT_SETUPS)}.",
    )
    parser.add_argument(
        "--rounds",
        type=_non_negative_int,
        default=3,
        help="Rounds of chats; 0 skips the chats. Default: 3.",
    )
    parser.add_argument(
        "--conversations",
        type=positive_int,
        default=6,
        help="Conversations per setup, concurrency level and round. Default: 6.",
    )
    parser.add_argument(
        "--turns", type=positive_int, default=3, help="User turns per conversation. Default: 3."
    )
    parser.add_argument(
        "--concurrency",
        type=positive_ints,
        default=(1, 4),
        help="Comma-separated numbers of conversations in flight at once. Default: 1,4.",
    )
    parser.add_argument(
        "--max_tokens", type=positive_int, default=24, help="Tokens per answer. Default: 24."
    )
    add_threads_argument(parser, "every server")
    parser.add_argument(
        "--cold_rounds",
        type=_non_negative_int,
        default=3,
        help="Rounds of cold starts (one warmed, one empty prefix directory each); 0 skips "
        "them. Default: 3.",
    )
    parser.add_argument(
        "--warming_requests",
        type=positive_int,
        default=3,
        help="Requests sharing the system prompt that the process warming the prefix "
        "directory serves before SIGTERM. Default: 3.",
    )
    add_llama_server_arguments(parser, "the llama-server setup")
    add_ready_timeout_argument(parser)
    parser.add_argument(
        "--request_timeout",
        type=float,
        default=300.0,
        help="Seconds one request may take before it counts as failed. Default: 300.",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="Also write every sample and summary here."
    )


def _progress(message: str) -> None:
    print(f"[kzero bench prefix] {message}", file=sys.stderr, flush=True)


# ---- one streamed chat turn ------------------------------------------------------------


@dataclass
class TurnResult:
    ttft_s: float | None
    text: str
    usage: dict[str, Any] | None
    completion_events: int
    completed: bool
    error: str | None

    @property
    def prompt_tokens(self) -> int | None:
        return int(self.usage["prompt_tokens"]) if self.usage else None

    @property
    def cached_tokens(self) -> int | None:
        details = (self.usage or {}).get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens")
        return None if cached is None else int(cached)

    @property
    def completion_tokens(self) -> int:
        if self.usage and "completion_tokens" in self.usage:
            return int(self.usage["completion_tokens"])
        return self.completion_events


async def stream_turn(
    client: httpx.AsyncClient, base_url: str, body: dict[str, Any], max_tokens: int
) -> TurnResult:
    """POST one streamed chat completion and read it to ``[DONE]``; TTFT from the send."""
    tally = StreamTally()
    error: str | None = None
    try:
        async with client.stream("POST", f"{base_url}/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                error = f"HTTP {response.status_code}: {text[:160]}"
            else:
                budget = EVENTS_PER_TOKEN_BOUND * max_tokens + EXTRA_EVENTS
                async for event in aevents(response.aiter_lines()):
                    tally.add(event)
                    if tally.done:
                        break
                    if len(tally.events) > budget:
                        error = "stream exceeded its event budget"
                        break
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:200]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        error = f"malformed event: {exc}"[:200]
    if error is None and tally.error is not None:
        error = str(tally.error.get("message", "error"))[:200]
    return TurnResult(
        tally.ttft_s,
        tally.text,
        tally.usage,
        tally.content_events,
        tally.complete and error is None,
        error,
    )


async def run_conversation(
    client: httpx.AsyncClient, base_url: str, workload: PrefixWorkload, chat: Conversation
) -> list[TurnResult]:
    """Every turn of one conversation; each carries the server's own previous answers."""
    history: list[tuple[str, str | None]] = []
    results = []
    for user in chat.user_turns:
        body = request_body(
            SERVED_NAME, messages(workload.system_prompt, history, user), workload.max_tokens
        )
        result = await stream_turn(client, base_url, body, workload.max_tokens)
        results.append(result)
        history.append((user, result.text))
    return results


async def run_chat_batch(
    client: httpx.AsyncClient, base_url: str, setup: str, workload: PrefixWorkload, batch: ChatBatch
) -> list[TurnSample]:
    """The batch's conversations, ``batch.concurrency`` of them in flight at once."""
    pending = list(batch.conversations)
    samples: list[TurnSample] = []

    async def worker() -> None:
        while pending:
            chat = pending.pop(0)
            for turn, result in enumerate(await run_conversation(client, base_url, workload, chat)):
                samples.append(
                    TurnSample(
                        setup=setup,
                        concurrency=batch.concurrency,
                        round_index=batch.round_index,
                        conversation=chat.key,
                        turn=turn,
                        ttft_s=result.ttft_s,
                        prompt_tokens=result.prompt_tokens,
                        cached_tokens=result.cached_tokens,
                        completion_tokens=result.completion_tokens,
                        completed=result.completed,
                        error=result.error,
                    )
                )

    await asyncio.gather(*(worker() for _ in range(min(batch.concurrency, len(pending)))))
    return samples


# ---- kzero's counters ------------------------------------------------------------------


def prompt_counters(samples: Samples) -> tuple[dict[str, float], float]:
    """kzero's cached prompt tokens by source, and its computed prompt tokens."""
    cached: dict[str, float] = {}
    for (name, labels), count in samples.items():
        if name == CACHED_COUNTER:
            source = dict(labels).get("source", "")
            cached[source] = cached.get(source, 0.0) + count
    return cached, value(samples, COMPUTED_COUNTER)


async def _counters(base_url: str) -> tuple[dict[str, float], float]:
    return prompt_counters(await asyncio.to_thread(scrape, base_url))


# ---- the chats -------------------------------------------------------------------------


@dataclass
class ChatRun:
    samples: list[TurnSample]
    metrics: list[MetricsDelta]
    commands: dict[str, list[str]]


def start_setup(
    name: str, model: Path, n_threads: int, llama_server: Path | None, scratch: Path
) -> StartedServer:
    """One setup at its defaults, but for the model, the served name and the threads.

    kzero gets a prefix directory of its own in the scratch folder, so nothing a
    run saves outlives it or reaches the next run (its default lies under the
    user's cache).
    """
    kzero = ["--model", str(model), "--model_name", SERVED_NAME, "--n_threads", str(n_threads)]
    if name in KZERO_VARIANTS:
        return launch_kzero(
            [*kzero, *KZERO_VARIANTS[name], "--prefix_cache_dir", str(scratch / name)], name=name
        )
    if name == LLAMA_SERVER:
        assert llama_server is not None, "llama-server needs a binary"
        return launch_llama_server(
            lambda port: llama_server_base_command(
                llama_server, model, n_threads, port, SERVED_NAME
            )
        )
    if name == LLAMA_CPP_SERVER:
        return launch_llama_cpp_server(model, n_threads)
    raise ValueError(f"unknown setup {name}")


async def _measure_chats(
    workload: PrefixWorkload, urls: dict[str, str], request_timeout_s: float
) -> tuple[list[TurnSample], list[MetricsDelta]]:
    timeout = httpx.Timeout(request_timeout_s, connect=10.0)
    limits = httpx.Limits(max_connections=max(workload.concurrency) + 1)
    samples: list[TurnSample] = []
    deltas: list[MetricsDelta] = []
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            name: await stack.enter_async_context(httpx.AsyncClient(timeout=timeout, limits=limits))
            for name in urls
        }
        for name, url in urls.items():
            # Pays for lazy allocations; primes a prompt cache with the system prompt
            # as any served traffic would. Not measured.
            await run_conversation(clients[name], url, workload, WARMUP_CONVERSATION)
        for batch in workload.schedule():
            for name, url in urls.items():
                before = await _counters(url) if name in KZERO_SETUPS else None
                samples += await run_chat_batch(clients[name], url, name, workload, batch)
                if before is not None:
                    after = await _counters(url)
                    deltas.append(
                        MetricsDelta(
                            name,
                            batch.concurrency,
                            batch.round_index,
                            counter_delta(before[0], after[0]),
                            after[1] - before[1],
                        )
                    )
            _progress(
                f"chats: round {batch.round_index + 1}/{workload.rounds}, "
                f"concurrency {batch.concurrency}: done"
            )
    return samples, deltas


def run_chats(
    workload: PrefixWorkload,
    setups: Sequence[str],
    model: Path,
    n_threads: int,
    llama_server: Path | None,
    scratch: Path,
    ready_timeout_s: float,
    request_timeout_s: float,
) -> ChatRun:
    with contextlib.ExitStack() as stack:
        _progress(f"starting {', '.join(setups)}")
        servers: dict[str, StartedServer] = {}
        for name in setups:
            servers[name] = start_setup(name, model, n_threads, llama_server, scratch)
            stack.callback(servers[name].process.stop)
        deadline = time.monotonic() + ready_timeout_s
        for server in servers.values():
            server.wait_ready(max(0.0, deadline - time.monotonic()))
        _progress("all setups loaded; warming up")
        urls = {name: server.process.url for name, server in servers.items()}
        samples, deltas = asyncio.run(_measure_chats(workload, urls, request_timeout_s))
        return ChatRun(samples, deltas, {n: s.process.command for n, s in servers.items()})


# ---- cold starts -----------------------------------------------------------------------


def _cold_args(model: Path, n_threads: int, prefix_dir: Path) -> list[str]:
    return [
        "--model", str(model),
        "--model_name", SERVED_NAME,
        "--n_threads", str(n_threads),
        "--prefix_cache_dir", str(prefix_dir),
    ]  # fmt: skip


async def _one_chat(
    base_url: str, workload: PrefixWorkload, chat: Conversation, timeout_s: float
) -> TurnResult:
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=10.0)) as client:
        return (await run_conversation(client, base_url, workload, chat))[-1]


def directory_contents(path: Path) -> tuple[int, int, tuple[str, ...]]:
    """Files, bytes and relative names of the files under ``path``."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    return (
        len(files),
        sum(p.stat().st_size for p in files),
        tuple(str(p.relative_to(path)) for p in files),
    )


def warm_prefix_directory(
    directory: Path,
    model: Path,
    n_threads: int,
    workload: PrefixWorkload,
    requests: int,
    ready_timeout_s: float,
    request_timeout_s: float,
) -> WarmedDirectory:
    """A kzero process serves the system prompt ``requests`` times, then gets SIGTERM."""
    directory.mkdir(parents=True)
    server = launch_kzero(_cold_args(model, n_threads, directory), name="kzero-warming")
    with server.process:
        server.wait_ready(ready_timeout_s)
        for chat in warming_conversations(requests):
            result = asyncio.run(_one_chat(server.process.url, workload, chat, request_timeout_s))
            if not result.completed:
                raise RuntimeError(f"a warming request failed: {result.error}")
        server.process.stop()  # SIGTERM: a clean exit, which may save prefixes
        exit_code = server.process.process.returncode
    files, size, names = directory_contents(directory)
    return WarmedDirectory(files, size, requests, exit_code, names[:20])


def cold_start(
    state: str,
    round_index: int,
    prefix_dir: Path,
    model: Path,
    n_threads: int,
    workload: PrefixWorkload,
    ready_timeout_s: float,
    request_timeout_s: float,
) -> ColdRun:
    """Spawn kzero serve, wait for ready, send the first request, read the disk counter."""
    spawned = time.perf_counter()
    server = launch_kzero(_cold_args(model, n_threads, prefix_dir), name=f"kzero-cold-{state}")
    with server.process:
        server.wait_ready(ready_timeout_s)
        ready_s = time.perf_counter() - spawned
        sent = time.perf_counter()
        result = asyncio.run(
            _one_chat(
                server.process.url, workload, cold_conversation(round_index), request_timeout_s
            )
        )
        cached, _ = prompt_counters(scrape(server.process.url))
    return ColdRun(
        state=state,
        round_index=round_index,
        ready_s=ready_s,
        ttft_s=result.ttft_s,
        first_token_s=None if result.ttft_s is None else sent - spawned + result.ttft_s,
        prompt_tokens=result.prompt_tokens,
        cached_tokens=result.cached_tokens,
        cached_from_disk=cached.get("disk", 0.0),
        completed=result.completed,
        error=result.error,
    )


def run_cold(
    workload: PrefixWorkload,
    rounds: int,
    warming_requests: int,
    model: Path,
    n_threads: int,
    scratch: Path,
    ready_timeout_s: float,
    request_timeout_s: float,
) -> tuple[WarmedDirectory, list[ColdRun]]:
    """Warm one directory once; each round starts from a fresh copy of it and from an
    empty directory, in alternating order."""
    warmed_dir = scratch / "cold-warmed"
    _progress(f"cold starts: warming {warmed_dir} with {warming_requests} requests")
    warmed = warm_prefix_directory(
        warmed_dir, model, n_threads, workload, warming_requests, ready_timeout_s, request_timeout_s
    )
    runs = []
    for round_index in range(rounds):
        order = ("with", "without") if round_index % 2 == 0 else ("without", "with")
        for state in order:
            prefix_dir = scratch / f"cold-{round_index}-{state}"
            if state == "with":
                shutil.copytree(warmed_dir, prefix_dir)
            else:
                prefix_dir.mkdir()
            runs.append(
                cold_start(
                    state,
                    round_index,
                    prefix_dir,
                    model,
                    n_threads,
                    workload,
                    ready_timeout_s,
                    request_timeout_s,
                )
            )
            shutil.rmtree(prefix_dir)
        _progress(f"cold starts: round {round_index + 1}/{rounds}: done")
    return warmed, runs


# ---- the command -----------------------------------------------------------------------


def _header(
    workload: PrefixWorkload,
    setups: Sequence[str],
    model: Path,
    n_threads: int,
    system_tokens: int,
    facts: dict[str, Any],
    cold_rounds: int,
) -> str:
    lines = [
        f"kzero bench prefix  {facts['date_utc']}",
        f"machine: nproc {facts['nproc']}, usable CPUs {facts['usable_cpus']}, {facts['cpu_model']}",
        f"model: {model.name}  threads {n_threads}  max_tokens {workload.max_tokens}  "
        f"temperature 0  system prompt {system_tokens} tokens",
    ]
    if workload.rounds:
        lines.append(
            f"chats: {workload.conversations} conversations x {workload.turns} turns per setup, "
            f"concurrency {','.join(map(str, workload.concurrency))}, {workload.rounds} rounds, "
            f"setups interleaved {', '.join(setups)}"
        )
    if cold_rounds:
        lines.append(
            f"cold starts: {cold_rounds} rounds of kzero with a warmed and an empty prefix dir"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    setups: tuple[str, ...] = args.setups if args.rounds else ()
    if LLAMA_CPP_SERVER in setups:
        missing = [m for m in LLAMA_CPP_SERVER_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            raise CommandError(
                f"llama_cpp.server needs {', '.join(missing)}: pip install -e '.[cpu,bench]'"
            )
    try:
        model = args.model if args.model is not None else default_model_path()
        if not model.is_file():
            raise FileNotFoundError(f"model file not found: {model}")
        workload = PrefixWorkload(
            conversations=args.conversations,
            turns=args.turns,
            rounds=args.rounds,
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
        )
        llama_server = None
        if LLAMA_SERVER in setups:
            llama_server = locate_llama_server(
                args.llama_server, args.build_llama_server, usable_cpu_count(), _progress
            )
    except (DefaultModelMissing, FileNotFoundError, ValueError, LlamaServerMissing) as exc:
        raise CommandError(str(exc)) from exc
    except RuntimeError as exc:  # the build failed
        raise CommandError(str(exc), status=1) from exc
    n_threads = args.n_threads or usable_cpu_count()
    facts: dict[str, Any] = dict(machine_facts())
    if llama_server is not None:
        facts["llama_server"] = str(llama_server)
        facts["llama_server_version"] = llama_server_version(llama_server)
    with token_counter(model) as count_tokens:
        system_tokens = count_tokens(workload.system_prompt)
    print(
        _header(workload, setups, model, n_threads, system_tokens, facts, args.cold_rounds),
        flush=True,
    )
    chats: ChatRun | None = None
    warmed: WarmedDirectory | None = None
    cold_runs: list[ColdRun] = []
    try:
        with sigterm_as_exit(), tempfile.TemporaryDirectory(prefix="kzero-bench-prefix-") as tmp:
            scratch = Path(tmp)
            if setups:
                chats = run_chats(
                    workload,
                    setups,
                    model,
                    n_threads,
                    llama_server,
                    scratch,
                    args.ready_timeout,
                    args.request_timeout,
                )
            if args.cold_rounds:
                warmed, cold_runs = run_cold(
                    workload,
                    args.cold_rounds,
                    args.warming_requests,
                    model,
                    n_threads,
                    scratch,
                    args.ready_timeout,
                    args.request_timeout,
                )
    except (RuntimeError, TimeoutError) as exc:
        raise CommandError(str(exc), status=1) from exc
    payload: dict[str, Any] = {
        "command": args.command_line,
        "facts": facts,
        "system_prompt_tokens": system_tokens,
        "workload": {k: v for k, v in asdict(workload).items() if k != "system_prompt"},
    }
    if chats is not None:
        summaries = summarize(chats.samples)
        ratio_items = ratios(summaries, chats.samples)
        totals = metrics_totals(chats.metrics)
        print()
        print(
            "\n".join(f"command {name}: {shlex.join(cmd)}" for name, cmd in chats.commands.items())
        )
        print()
        print(format_table(summaries, setups))
        print()
        print(format_ratios(ratio_items))
        if totals:
            print(format_metrics(totals))
        payload |= {
            "server_commands": chats.commands,
            "samples": [asdict(s) for s in chats.samples],
            "metrics_deltas": [asdict(d) for d in chats.metrics],
            "summary": [{**asdict(s), "cached_share": s.cached_share} for s in summaries],
            "ratios": [asdict(r) for r in ratio_items],
            "metrics_totals": [
                {**asdict(t), "cached": t.cached, "cached_share": t.cached_share} for t in totals
            ],
        }
    if cold_runs:
        cold_summaries = summarize_cold(cold_runs)
        ratio = cold_ratio(cold_runs)
        print()
        print(format_cold(cold_summaries, ratio, warmed))
        payload |= {
            "cold_warmed_directory": asdict(warmed) if warmed else None,
            "cold_runs": [asdict(r) for r in cold_runs],
            "cold_summary": [asdict(s) for s in cold_summaries],
            "cold_ratio": asdict(ratio) if ratio else None,
        }
    print()
    print("\n".join(f"note: {line}" for line in notes(setups, workload.concurrency)))
    if args.json is not None:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0
