"""``kzero bench``: arguments, the three setups' lifetimes, and the printed report.

Servers are child processes that are always stopped on the way out (SIGTERM,
then SIGKILL), including when the bench itself is interrupted or terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

import httpx

from predictor.bench.facts import machine_facts
from predictor.bench.http_client import HttpCompletionSetup
from predictor.bench.raw import RawLlamaSetup
from predictor.bench.report import format_ratios, format_table, notes, ratios, summarize, to_json
from predictor.bench.runner import measure
from predictor.bench.samples import BatchSample
from predictor.bench.servers import SERVED_NAME, start_kzero, start_llama_cpp_server
from predictor.bench.workload import Workload
from predictor.cpu_quota import usable_cpu_count
from predictor.default_model import DefaultModelMissing, default_model_path

# Setup (a) imports llama_cpp; setup (c) runs llama_cpp.server, whose extra
# dependencies (llama-cpp-python[server]) are these.
REQUIRED_MODULES = ("llama_cpp", "sse_starlette", "starlette_context")

SETUP_NAMES = {
    "a": "a raw llama-cpp-python",
    "b": "b kzero",
    "c": "c llama_cpp.server",
}


def _concurrency_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,4, got '{text}'") from None
    if not levels or any(level < 1 for level in levels):
        raise argparse.ArgumentTypeError("concurrency levels must be positive")
    return levels


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kzero bench",
        description=(
            "Measure tokens/s and time to first token of (a) llama-cpp-python in-process, "
            "(b) kzero over HTTP and (c) llama_cpp.server over HTTP, interleaved in one run. "
            "Prints medians over rounds and the ratios b/a and b/c."
        ),
        epilog="'kzero bench coldstart --help': the cold-start benchmark (cache miss, hit, hot). "
        "'kzero bench soak --help': concurrent streams for minutes; errors, memory, gauges.",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="GGUF file all three setups load. Default: the bundled SmolLM2-135M-Instruct.",
    )
    parser.add_argument(
        "--rounds",
        type=_positive,
        default=5,
        help="Rounds; medians are taken over them. Default: 5.",
    )
    parser.add_argument(
        "--concurrency",
        type=_concurrency_levels,
        default=(1, 4),
        help="Comma-separated numbers of requests sent at once. Default: 1,4.",
    )
    parser.add_argument(
        "--max_tokens",
        type=_positive,
        default=128,
        help="Tokens to generate per request. Default: 128.",
    )
    parser.add_argument(
        "--n_threads",
        type=_positive,
        default=None,
        help=(
            "llama.cpp threads for every setup. Default: the CPUs this process may use "
            "(its affinity, capped by the cgroup CPU quota), as kzero serve does."
        ),
    )
    parser.add_argument(
        "--n_ctx",
        type=_positive,
        default=1024,
        help="Context window for every setup. Default: 1024.",
    )
    parser.add_argument(
        "--n_batch",
        type=_positive,
        default=512,
        help="Prompt batch size for every setup. Default: 512.",
    )
    parser.add_argument(
        "--ready_timeout",
        type=float,
        default=300.0,
        help="Seconds to wait for both servers to load the model. Default: 300.",
    )
    parser.add_argument(
        "--batch_timeout",
        type=float,
        default=600.0,
        help="Seconds one batch of HTTP requests may take before the run fails. Default: 600.",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="Also write raw samples, summary and facts here."
    )
    return parser


def workload_from_args(args: argparse.Namespace) -> Workload:
    model = args.model if args.model is not None else default_model_path()
    if not model.is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    return Workload(
        model_path=model,
        n_threads=args.n_threads or usable_cpu_count(),
        n_ctx=args.n_ctx,
        n_batch=args.n_batch,
        max_tokens=args.max_tokens,
        rounds=args.rounds,
        concurrency=args.concurrency,
    )


def missing_modules() -> list[str]:
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def _progress(message: str) -> None:
    print(f"[kzero bench] {message}", file=sys.stderr, flush=True)


async def _measure_all(
    workload: Workload, raw: RawLlamaSetup, urls: dict[str, str], batch_timeout_s: float
) -> list[BatchSample]:
    timeout = httpx.Timeout(batch_timeout_s, connect=10.0)
    limits = httpx.Limits(max_connections=max(workload.concurrency) + 1)
    async with contextlib.AsyncExitStack() as stack:
        setups = [raw]
        for key, url in urls.items():
            client = await stack.enter_async_context(
                httpx.AsyncClient(timeout=timeout, limits=limits)
            )
            setups.append(
                HttpCompletionSetup(
                    key, client, base_url=url, model=SERVED_NAME, batch_timeout_s=batch_timeout_s
                )
            )
        return await measure(workload, setups, _progress)


def run_setups(
    workload: Workload, ready_timeout_s: float, batch_timeout_s: float
) -> list[BatchSample]:
    """Start (b) and (c), load (a), measure, and stop everything on the way out."""
    with contextlib.ExitStack() as stack:
        _progress("starting kzero and llama_cpp.server")
        kzero = start_kzero(workload)
        stack.callback(kzero.stop)
        llama_server = start_llama_cpp_server(workload)
        stack.callback(llama_server.stop)
        raw = RawLlamaSetup(workload)
        stack.callback(raw.close)
        deadline = time.monotonic() + ready_timeout_s
        kzero.wait_ready(deadline)
        llama_server.wait_ready(deadline)
        _progress("all three setups loaded; warming up")
        urls = {"b": kzero.url, "c": llama_server.url}
        return asyncio.run(_measure_all(workload, raw, urls, batch_timeout_s))


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so the servers' ``finally`` cleanup still runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _header(workload: Workload, facts: dict[str, str | int]) -> str:
    return "\n".join(
        [
            f"kzero bench  {facts['date_utc']}",
            f"machine: nproc {facts['nproc']}, usable CPUs {facts['usable_cpus']}, {facts['cpu_model']}",
            f"model: {workload.model_path.name}  threads {workload.n_threads}  n_ctx {workload.n_ctx}"
            f"  n_batch {workload.n_batch}  max_tokens {workload.max_tokens}  temperature 0",
            f"rounds {workload.rounds}, concurrency {','.join(map(str, workload.concurrency))}, "
            "setups interleaved a, b, c in every round",
            *(f"  {name}" for name in SETUP_NAMES.values()),
        ]
    )


def bench_main(argv: Sequence[str]) -> int:
    """Entry point of ``kzero bench``; returns the process exit status."""
    if argv and argv[0] == "coldstart":
        from predictor.bench.coldstart import coldstart_main

        return coldstart_main(argv[1:])
    if argv and argv[0] == "soak":
        from predictor.bench.soak import soak_main

        return soak_main(argv[1:])
    args = build_parser().parse_args(list(argv))
    missing = missing_modules()
    if missing:
        print(
            f"kzero bench: missing {', '.join(missing)}: "
            "pip install 'llama-cpp-python[server]==0.3.36' (or kzero[cpu,test])",
            file=sys.stderr,
        )
        return 2
    try:
        workload = workload_from_args(args)
    except (DefaultModelMissing, FileNotFoundError, ValueError) as exc:
        print(f"kzero bench: {exc}", file=sys.stderr)
        return 2
    facts = machine_facts()
    print(_header(workload, facts), flush=True)
    try:
        with _sigterm_as_exit():
            samples = run_setups(workload, args.ready_timeout, args.batch_timeout)
    except (RuntimeError, TimeoutError) as exc:
        print(f"kzero bench: {exc}", file=sys.stderr)
        return 1
    summaries = summarize(samples)
    ratio_items = ratios(summaries, samples)
    print()
    print(format_table(summaries, SETUP_NAMES))
    print()
    print(format_ratios(ratio_items))
    print()
    print("\n".join(f"note: {line}" for line in notes(workload.concurrency)))
    if args.json is not None:
        payload = {
            "command": ["kzero", "bench", *argv],
            **to_json(facts, samples, summaries, ratio_items),
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0
