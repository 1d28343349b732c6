"""``kzero bench``: arguments, the four setups' lifetimes, and the printed report.

``kzero bench`` compares the setups; ``kzero bench coldstart``, ``soak``,
``prefix`` and ``build-llama-server`` are its subcommands. Servers are child processes that
are always stopped on the way out (SIGTERM, then SIGKILL), including when the
bench itself is interrupted or terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from bench.arguments import add_ready_timeout_argument
from bench.ceiling import (
    DEFAULT_REPEATS,
    Bandwidth,
    StepBytes,
    ceiling_rows,
    format_ceiling,
    last_level_cache_bytes,
    measure_copy_bandwidth,
    model_step_bytes,
    stream_array_mib,
)
from bench.facts import llama_cpp_system_info, machine_facts
from bench.harness.process import sigterm_as_exit
from bench.http_client import HttpCompletionSetup
from bench.llama_server import (
    BUILD_INFO,
    LlamaServerMissing,
    add_llama_server_arguments,
    build_llama_server,
    cached_binary,
    installed_version,
    llama_server_version,
    locate_llama_server,
)
from bench.prefix_workload import SYSTEM_PROMPT
from bench.raw import RawLlamaSetup
from bench.report import (
    RATIO_PAIRS,
    format_ratios,
    format_scaling,
    format_table,
    format_targets,
    notes,
    ratios,
    scaling,
    summarize,
    targets,
    to_json,
)
from bench.runner import Setup, measure
from bench.samples import BatchSample
from bench.servers import (
    SERVED_NAME,
    StartedServer,
    kzero_variant_args,
    launch_kzero,
    start_kzero,
    start_llama_cpp_server,
    start_llama_server,
)
from bench.soak.memory import peak_rss_bytes, sample_process_tree
from bench.vocab import token_counter
from bench.workload import PROMPTS, Workload, lengthened
from predictor.backends.gguf_metadata import read_gguf_metadata
from predictor.backends.llamacpp import default_parallel, resolve_context_length
from predictor.cli_parsing import (
    ArgumentParser,
    CommandError,
    positive_int,
    positive_ints,
    run_command,
    set_run,
)
from predictor.cpu_quota import usable_cpu_count
from predictor.default_model import DefaultModelMissing, default_model_path

# Setup (a) imports llama_cpp; setup (c) runs llama_cpp.server, whose extra
# dependencies (llama-cpp-python[server]) are these. Setup (d) is a binary.
REQUIRED_MODULES = ("llama_cpp", "sse_starlette", "starlette_context")

SETUP_NAMES = {
    "a": "a raw llama-cpp-python",
    "b": "b kzero",
    "c": "c llama_cpp.server",
    "d": "d llama-server (C++)",
}
# Setups that decode their concurrent requests together, one step for all.
BATCHING_SETUPS = ("b", "d")


KZERO_DEFAULT = "default"
# What --prompt_tokens lengthens prompts with: a real document (the prefix
# bench's ~1,000-token support policy), repeated to reach long contexts.
PASSAGE = "\n\n".join([SYSTEM_PROMPT] * 4)


def _kzero_parallel(text: str) -> tuple[int | None, ...]:
    """``default,4,8`` -> (None, 4, 8): None leaves --max_running_requests to kzero."""
    values: list[int | None] = []
    for part in (part.strip() for part in text.split(",")):
        if not part:
            continue
        if part == KZERO_DEFAULT:
            values.append(None)
            continue
        try:
            number = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected numbers or '{KZERO_DEFAULT}' like default,4,8, got '{text}'"
            ) from None
        if number < 1:
            raise argparse.ArgumentTypeError("parallel sequences must be positive")
        values.append(number)
    if not values or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected distinct values like default,4,8, got '{text}'")
    return tuple(values)


def kzero_variant_key(parallel: int | None) -> str:
    """Setup key of one kzero variant: ``b:4``, ``b:default``."""
    return f"b:{KZERO_DEFAULT if parallel is None else parallel}"


def kzero_variant_name(parallel: int | None) -> str:
    if parallel is None:
        return "b kzero, default parallel"
    return f"b kzero --max_running_requests {parallel}"


def _setups(text: str) -> tuple[str, ...]:
    keys = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [key for key in keys if key not in SETUP_NAMES]
    if not keys or unknown:
        raise argparse.ArgumentTypeError(
            f"expected setups among {','.join(SETUP_NAMES)}, got '{text}'"
        )
    return tuple(key for key in SETUP_NAMES if key in keys)


def build_parser(prog: str = "kzero bench") -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description=(
            "Measure tokens/s, time to first token and inter-token latency of (a) llama-cpp-python "
            "in-process, (b) kzero, (c) llama_cpp.server and (d) llama.cpp's C++ llama-server "
            "over HTTP, interleaved in one run, with the memory-bandwidth ceiling. Prints medians "
            "over rounds, kzero's ratios to each peer and its targets against llama-server."
        ),
    )
    set_run(parser, run_comparison)
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="GGUF file every setup loads. Default: the bundled SmolLM2-135M-Instruct.",
    )
    parser.add_argument(
        "--setups",
        type=_setups,
        default=tuple(SETUP_NAMES),
        help="Comma-separated setups to measure, among a,b,c,d. Default: a,b,c,d.",
    )
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=5,
        help="Rounds; medians are taken over them. Default: 5.",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_ints,
        default=(1, 4, 8),
        help="Comma-separated numbers of requests sent at once. Default: 1,4,8.",
    )
    parser.add_argument(
        "--max_tokens",
        type=positive_int,
        default=128,
        help="Tokens to generate per request. Default: 128.",
    )
    parser.add_argument(
        "--prompt_tokens",
        type=positive_int,
        default=None,
        help=(
            "Lengthen every prompt to this many tokens with a shared passage after its "
            "distinct opening (no two prompts share a prefix), to measure decoding over a "
            "longer context. Default: the openings alone, 10 to 20 tokens."
        ),
    )
    parser.add_argument(
        "--n_threads",
        type=positive_int,
        default=None,
        help=(
            "llama.cpp threads for every setup. Default: the CPUs this process may use "
            "(its affinity, capped by the cgroup CPU quota), as kzero serve does."
        ),
    )
    parser.add_argument(
        "--n_ctx",
        type=positive_int,
        default=2048,
        help="Context window per sequence for every setup. Default: 2048.",
    )
    parser.add_argument(
        "--n_batch",
        type=positive_int,
        default=512,
        help="Prompt batch size for every setup. Default: 512.",
    )
    parser.add_argument(
        "--parallel",
        type=positive_int,
        default=None,
        help=(
            "Sequences kzero (--max_running_requests) and llama-server (--parallel) decode "
            "together. Default: the highest concurrency level."
        ),
    )
    parser.add_argument(
        "--kzero_parallel",
        type=_kzero_parallel,
        default=None,
        help=(
            "Comma-separated --max_running_requests values, one kzero setup each, measured "
            "side by side in place of setup b ('default': kzero's own choice, four per CPU "
            "up to 8); --parallel then sets llama-server's alone. Each server's resident "
            "memory is reported too. Example: default,4,8,16."
        ),
    )
    parser.add_argument(
        "--kzero_args",
        type=shlex.split,
        default=[],
        help="More 'kzero serve' flags for every kzero setup, as one shell-quoted string. "
        "Example: --kzero_args '--flash_attn true'.",
    )
    add_llama_server_arguments(parser, "setup d")
    parser.add_argument(
        "--bandwidth_mib",
        type=positive_int,
        default=None,
        help="Size of each array of the DRAM bandwidth copy, in MiB. Default: 4 times the "
        "last-level cache (STREAM's rule), at least 256.",
    )
    add_ready_timeout_argument(parser)
    parser.add_argument(
        "--batch_timeout",
        type=float,
        default=600.0,
        help="Seconds one batch of HTTP requests may take before the run fails. Default: 600.",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="Also write raw samples, summary and facts here."
    )
    _add_subcommands(parser)
    return parser


def _add_subcommands(parser: ArgumentParser) -> None:
    # Imported here: their modules are small, but a comparison run needs none of them.
    from bench import attention, coldstart, prefix
    from bench.soak import cli as soak_cli

    commands = parser.add_subparsers(title="subcommands", dest="subcommand")
    for name, module, summary in (
        (
            "coldstart",
            coldstart,
            "process start -> ready -> first token with the model missing, on disk, cached",
        ),
        (
            "soak",
            soak_cli,
            "concurrent streams for minutes: errors, stuck requests, memory, gauges",
        ),
        (
            "prefix",
            prefix,
            "chats sharing a 1,000-token system prompt: TTFT against llama-server and "
            "llama_cpp.server; cold starts with a warmed prefix directory",
        ),
        (
            "attention",
            attention,
            "one llama.cpp decode step with flash attention off and on, by context length",
        ),
    ):
        module.add_arguments(
            commands.add_parser(name, help=summary, description=module.DESCRIPTION)
        )
    build = commands.add_parser(
        "build-llama-server",
        help="build setup d's llama-server once (about 10 minutes on 2 cores)",
        description="Build llama.cpp's llama-server from the llama.cpp sources in the "
        "llama-cpp-python sdist of the installed version (pip download; cmake, Release, "
        "native CPU features without AMX), into ~/.cache/kzero/llama-server/<version>/. "
        "About 10 minutes on 2 cores; a cached build is reused.",
    )
    build.add_argument("--jobs", type=positive_int, default=None, help="Build jobs. Default: CPUs.")
    set_run(build, build_llama_server_run)


def workload_from_args(args: argparse.Namespace) -> Workload:
    model = args.model if args.model is not None else default_model_path()
    if not model.is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    prompts = PROMPTS
    if args.prompt_tokens is not None:
        if args.prompt_tokens + args.max_tokens > args.n_ctx:
            raise ValueError(
                f"--prompt_tokens {args.prompt_tokens} and --max_tokens {args.max_tokens} "
                f"do not fit in --n_ctx {args.n_ctx}"
            )
        with token_counter(model) as count_tokens:
            prompts = lengthened(PROMPTS, PASSAGE, args.prompt_tokens, count_tokens)
    return Workload(
        model_path=model,
        n_threads=args.n_threads or usable_cpu_count(),
        n_ctx=args.n_ctx,
        n_batch=args.n_batch,
        max_tokens=args.max_tokens,
        rounds=args.rounds,
        concurrency=args.concurrency,
        n_parallel=args.parallel or max(args.concurrency),
        prompts=prompts,
        prompt_tokens=args.prompt_tokens,
        kzero_extra_args=tuple(args.kzero_args),
    )


def missing_modules() -> list[str]:
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def _progress(message: str) -> None:
    print(f"[kzero bench] {message}", file=sys.stderr, flush=True)


async def _measure_all(
    workload: Workload, raw: RawLlamaSetup | None, urls: dict[str, str], batch_timeout_s: float
) -> list[BatchSample]:
    timeout = httpx.Timeout(batch_timeout_s, connect=10.0)
    limits = httpx.Limits(max_connections=max(workload.concurrency) + 1)
    async with contextlib.AsyncExitStack() as stack:
        setups: list[Setup] = [raw] if raw is not None else []
        for key, url in urls.items():
            client = await stack.enter_async_context(
                httpx.AsyncClient(timeout=timeout, limits=limits)
            )
            setups.append(
                HttpCompletionSetup(
                    key, client, base_url=url, model=SERVED_NAME, batch_timeout_s=batch_timeout_s
                )
            )
        # a first, then the servers in the order they were started: b (or its
        # variants, in the order asked), c, d.
        return await measure(workload, setups, _progress)


@dataclass
class ServerMemory:
    """A server's resident memory (its process tree), in bytes."""

    loaded: int  # after loading the model, before any request
    after: int  # after every round, idle
    peak: int  # VmHWM: the most it ever held


def _memory_now(server: StartedServer) -> int:
    return sample_process_tree(server.process.process.pid, 0.0).rss_bytes


@dataclass
class RunResult:
    samples: list[BatchSample]
    # DRAM (STREAM-sized arrays) and weight-sized copies, before and after the rounds.
    dram: list[Bandwidth]
    cached: list[Bandwidth]
    commands: dict[str, list[str]]
    memory: dict[str, ServerMemory]


def _bandwidth(workload: Workload, array_mib: int, label: str) -> Bandwidth:
    result = measure_copy_bandwidth(workload.n_threads, array_mib, DEFAULT_REPEATS, label)
    _progress(
        f"copy bandwidth {label}, 2 x {array_mib} MiB: best {result.best / 1e9:.2f} GB/s, "
        f"median {result.median / 1e9:.2f} GB/s ({result.threads} threads)"
    )
    return result


def run_setups(
    workload: Workload,
    setups: Sequence[str],
    llama_server: Path | None,
    ready_timeout_s: float,
    batch_timeout_s: float,
    dram_mib: int,
    weights_mib: int,
    kzero_parallel: Sequence[int | None] = (),
) -> RunResult:
    """Measure the copy bandwidth, start the servers, load (a), measure, measure the
    bandwidth again while the servers idle, and stop everything on the way out."""
    dram = [_bandwidth(workload, dram_mib, "before")]
    cached = [_bandwidth(workload, weights_mib, "before")]
    with contextlib.ExitStack() as stack:
        _progress(f"starting setups {','.join(setups)}")
        servers: dict[str, StartedServer] = {}
        if "b" in setups and kzero_parallel:
            for parallel in kzero_parallel:
                key = kzero_variant_key(parallel)
                servers[key] = launch_kzero(kzero_variant_args(workload, parallel), name=key)
                stack.callback(servers[key].process.stop)
        elif "b" in setups:
            servers["b"] = start_kzero(workload)
            stack.callback(servers["b"].process.stop)
        if "c" in setups:
            servers["c"] = start_llama_cpp_server(workload)
            stack.callback(servers["c"].process.stop)
        if "d" in setups:
            assert llama_server is not None, "setup d needs a llama-server binary"
            servers["d"] = start_llama_server(llama_server, workload)
            stack.callback(servers["d"].process.stop)
        raw = None
        if "a" in setups:
            raw = RawLlamaSetup(workload)
            stack.callback(raw.close)
        deadline = time.monotonic() + ready_timeout_s
        for server in servers.values():
            server.wait_ready(max(0.0, deadline - time.monotonic()))
        loaded = {key: _memory_now(server) for key, server in servers.items()}
        _progress("all setups loaded; warming up")
        urls = {key: server.process.url for key, server in servers.items()}
        samples = asyncio.run(_measure_all(workload, raw, urls, batch_timeout_s))
        memory = {
            key: ServerMemory(
                loaded[key], _memory_now(server), peak_rss_bytes(server.process.process.pid)
            )
            for key, server in servers.items()
        }
        # The servers are idle now; their threads sleep.
        dram.append(_bandwidth(workload, dram_mib, "after"))
        cached.append(_bandwidth(workload, weights_mib, "after"))
        return RunResult(
            samples=samples,
            dram=dram,
            cached=cached,
            commands={key: server.process.command for key, server in servers.items()},
            memory=memory,
        )


def _header(
    workload: Workload,
    names: dict[str, str],
    facts: dict[str, str | int],
    kzero_default: int | None = None,
) -> str:
    if kzero_default is None:
        together = f"kzero and llama-server decode up to {workload.n_parallel} sequences together"
    else:
        together = (
            f"llama-server decodes up to {workload.n_parallel} sequences together, each kzero "
            f"setup its own --max_running_requests (kzero's default here: {kzero_default})"
        )
    return "\n".join(
        [
            f"kzero bench  {facts['date_utc']}",
            f"machine: nproc {facts['nproc']}, usable CPUs {facts['usable_cpus']}, {facts['cpu_model']}",
            f"model: {workload.model_path.name}  threads {workload.n_threads}  n_ctx {workload.n_ctx}"
            f" per sequence  n_batch {workload.n_batch}  max_tokens {workload.max_tokens}"
            "  temperature 0",
            "prompts: "
            + (
                "the openings alone"
                if workload.prompt_tokens is None
                else f"{workload.prompt_tokens} tokens each (opening + shared passage)"
            ),
            f"rounds {workload.rounds}, concurrency {','.join(map(str, workload.concurrency))}, "
            f"setups interleaved {', '.join(names)} in every round; {together}",
            *(f"  {name}" for name in names.values()),
        ]
    )


def _weights_mib(step: StepBytes) -> int:
    """Arrays as large as the weights, so one copy reads what one decode step reads."""
    return max(1, -(-step.weights // 2**20))


def _format_commands(commands: dict[str, list[str]], names: dict[str, str]) -> str:
    return "\n".join(
        f"command {names[key]}: {shlex.join(command)}" for key, command in commands.items()
    )


def setup_names(
    setups: Sequence[str], kzero_parallel: Sequence[int | None] | None
) -> dict[str, str]:
    """Every measured setup's key and printed name, in the order they are measured."""
    names: dict[str, str] = {}
    for key in setups:
        if key == "b" and kzero_parallel:
            for parallel in kzero_parallel:
                names[kzero_variant_key(parallel)] = kzero_variant_name(parallel)
        else:
            names[key] = SETUP_NAMES[key]
    return names


def ratio_pairs(keys: Sequence[str]) -> list[tuple[str, str]]:
    """RATIO_PAIRS, with each kzero variant standing in for b."""
    kzero = [key for key in keys if key.startswith("b")]
    return [
        (top, bottom)
        for numerator, bottom in RATIO_PAIRS
        for top in (kzero if numerator == "b" else [numerator])
    ]


def kzero_default_parallel(workload: Workload) -> int:
    """What kzero serve picks for --max_running_requests with the bench's flags: the
    same function, fed the same threads, context per sequence and model."""
    metadata = read_gguf_metadata(workload.model_path)
    context = resolve_context_length(workload.n_ctx, metadata.context_length)
    return default_parallel(workload.n_threads, context, metadata.kv_bytes_per_token)


def format_memory(memory: dict[str, ServerMemory], names: dict[str, str]) -> str:
    mib = 2**20
    return "\n".join(
        f"memory {names[key]}: {m.loaded / mib:.0f} MiB after loading, {m.after / mib:.0f} MiB "
        f"after the rounds, peak {m.peak / mib:.0f} MiB"
        for key, m in memory.items()
    )


def build_llama_server_run(args: argparse.Namespace) -> int:
    """``kzero bench build-llama-server``: build setup d's binary once, into the cache."""
    version = installed_version()
    cached = cached_binary(version)
    if cached.is_file():
        print(f"llama-server for llama-cpp-python {version} already built: {cached}")
        return 0
    try:
        built = build_llama_server(version, args.jobs or usable_cpu_count(), _progress)
    except RuntimeError as exc:
        raise CommandError(str(exc), status=1) from exc
    print(built)
    return 0


def bench_main(argv: Sequence[str]) -> int:
    """``kzero bench`` and its subcommands; returns the process exit status."""
    return run_command(build_parser(), argv, ["kzero", "bench", *argv])


def run_comparison(args: argparse.Namespace) -> int:
    """``kzero bench``: the setups side by side, then the tables, ratios, targets and ceiling."""
    missing = missing_modules()
    if missing:
        raise CommandError(
            f"setup c (llama_cpp.server) needs {', '.join(missing)}: "
            "pip install -e '.[cpu,bench]' in the kzero checkout"
        )
    setups: tuple[str, ...] = args.setups
    try:
        workload = workload_from_args(args)
        llama_server = None
        if "d" in setups:
            llama_server = locate_llama_server(
                args.llama_server, args.build_llama_server, usable_cpu_count(), _progress
            )
    except (DefaultModelMissing, FileNotFoundError, ValueError, LlamaServerMissing) as exc:
        raise CommandError(str(exc)) from exc
    except RuntimeError as exc:  # the build failed
        raise CommandError(str(exc), status=1) from exc
    facts = machine_facts()
    facts["llama_cpp_system_info"] = llama_cpp_system_info()
    if llama_server is not None:
        facts["llama_server"] = str(llama_server)
        facts["llama_server_version"] = llama_server_version(llama_server)
        build_info = llama_server.parent / BUILD_INFO
        if build_info.is_file():
            facts["llama_server_build"] = build_info.read_text()
    step = model_step_bytes(workload.model_path)
    llc = last_level_cache_bytes()
    facts["last_level_cache_bytes"] = llc if llc is not None else "unknown"
    dram_mib = args.bandwidth_mib or stream_array_mib(llc)
    kzero_parallel: tuple[int | None, ...] = args.kzero_parallel or ()
    if "b" not in setups:
        kzero_parallel = ()
    names = setup_names(setups, kzero_parallel)
    kzero_default = kzero_default_parallel(workload) if kzero_parallel else None
    print(_header(workload, names, facts, kzero_default), flush=True)
    try:
        with sigterm_as_exit():
            result = run_setups(
                workload,
                setups,
                llama_server,
                args.ready_timeout,
                args.batch_timeout,
                dram_mib,
                _weights_mib(step),
                kzero_parallel,
            )
    except (RuntimeError, TimeoutError) as exc:
        raise CommandError(str(exc), status=1) from exc
    samples = result.samples
    # Printed in the order measured: a, b (or its variants, as asked), c, d.
    rank = {key: i for i, key in enumerate(names)}
    summaries = sorted(summarize(samples), key=lambda s: (rank[s.setup], s.concurrency))
    ratio_items = ratios(summaries, samples, ratio_pairs(list(names)))
    scaling_items = sorted(
        scaling(summaries, samples), key=lambda s: (rank[s.setup], s.concurrency)
    )
    target_items = targets(ratio_items)
    dram = max(result.dram, key=lambda b: b.best)
    cached = max(result.cached, key=lambda b: b.best)
    sequences = {"d": workload.n_parallel, "b": workload.n_parallel}
    for parallel in kzero_parallel:
        sequences[kzero_variant_key(parallel)] = parallel or kzero_default or 1
    ceiling = sorted(
        ceiling_rows(
            {(s.setup, s.concurrency): s.tokens_per_s for s in summaries},
            [key for key in names if key[0] in BATCHING_SETUPS],
            step.weights,
            dram.best,
            cached.best,
            sequences,
        ),
        key=lambda row: (rank[row.setup], row.concurrency),
    )
    print()
    print(_format_commands(result.commands, names))
    print()
    print(format_table(summaries, names))
    print()
    print(format_ratios(ratio_items))
    if scaling_items:
        print(format_scaling(scaling_items, names))
    if target_items:
        print()
        print(format_targets(target_items))
    print()
    print(format_memory(result.memory, names))
    print()
    print(format_ceiling(result.dram, cached, step, ceiling, names))
    print()
    print("\n".join(f"note: {line}" for line in notes(workload.concurrency, setups)))
    if args.json is not None:
        payload = {
            "command": args.command_line,
            **to_json(
                facts,
                samples,
                summaries,
                ratio_items,
                scaling=[asdict(item) for item in scaling_items],
                targets=[{**asdict(t), "verdict": t.verdict} for t in target_items],
                server_commands=result.commands,
                bandwidth_dram=[asdict(b) for b in result.dram],
                bandwidth_weight_sized=[asdict(b) for b in result.cached],
                step_bytes=asdict(step),
                ceiling=[asdict(row) for row in ceiling],
                setup_names=names,
                kzero_default_parallel=kzero_default,
                memory_bytes={key: asdict(m) for key, m in result.memory.items()},
            ),
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0
