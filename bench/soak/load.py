"""The run: a ``kzero serve`` child, client workers, a memory sampler and progress lines."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.harness.metrics import Samples, scrape, value
from bench.harness.process import PredictorProcess
from bench.soak.client import RequestResult, stream_chat
from bench.soak.conversations import SERVED_NAME, request_body
from bench.soak.memory import RssSample, sample_process_tree

PROGRESS_EVERY_S = 30.0
# After the clients stop, the server gets this long to bring its gauges to 0.
IDLE_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 300.0
GAUGES = ("kzero_requests_running", "kzero_requests_waiting")


@dataclass
class SoakConfig:
    model: Path
    duration_s: float
    concurrency: int
    warmup_s: float
    max_tokens: int
    request_timeout_s: float
    sample_every_s: float


@dataclass
class SoakRun:
    """Everything one run measured, before it is judged."""

    results: list[RequestResult] = field(default_factory=list)
    rss: list[RssSample] = field(default_factory=list)
    idle_rss: RssSample | None = None
    load_s: float = 0.0
    metrics_before: Samples = field(default_factory=dict)
    metrics_after: Samples = field(default_factory=dict)
    idle_wait_s: float = 0.0
    server_exit: int | None = None
    # 1-minute load averages when the load started and ended: on a shared
    # machine, another process's llama.cpp explains a slow or "stuck" run.
    loadavg: tuple[float, float] = (0.0, 0.0)


def progress(message: str) -> None:
    print(f"[kzero soak] {message}", file=sys.stderr, flush=True)


async def wait_idle(base_url: str, timeout_s: float) -> tuple[Samples, float]:
    """Scrape until both request gauges read 0, or ``timeout_s`` passes; the last scrape."""
    started = time.monotonic()
    while True:
        metrics = await asyncio.to_thread(scrape, base_url)
        waited = time.monotonic() - started
        if all(value(metrics, name) == 0 for name in GAUGES) or waited >= timeout_s:
            return metrics, waited
        await asyncio.sleep(0.5)


class _Load:
    """The shared state of the client workers, the sampler and the progress reporter."""

    def __init__(self, config: SoakConfig, server: PredictorProcess) -> None:
        self.config = config
        self.server = server
        self.url = f"{server.url}/v1/chat/completions"
        self.results: list[RequestResult] = []
        self.rss: list[RssSample] = []
        self.in_flight = 0
        self.next_index = 0
        self.started = time.monotonic()
        self.end = self.started + config.duration_s
        self.server_exit: int | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def running(self) -> bool:
        return time.monotonic() < self.end and self.server_exit is None

    async def worker(self, client: httpx.AsyncClient) -> None:
        while self.running():
            index = self.next_index
            self.next_index += 1
            self.in_flight += 1
            try:
                body = request_body(index, self.config.max_tokens)
                result = await stream_chat(client, self.url, body, self.config.request_timeout_s)
            finally:
                self.in_flight -= 1
            self.results.append(result)
            if result.outcome != "ok":
                progress(f"request {index}: {result.outcome} {result.detail}")

    async def sampler(self) -> None:
        pid = self.server.process.pid
        while self.running():
            exit_code = self.server.process.poll()
            if exit_code is not None:
                self.server_exit = exit_code
                progress(f"the server exited with {exit_code}; stopping the run")
                return
            # OSError: it exited between poll() and the read; the next poll says so.
            with contextlib.suppress(OSError):
                self.rss.append(await asyncio.to_thread(sample_process_tree, pid, self.elapsed()))
            await asyncio.sleep(self.config.sample_every_s)

    async def reporter(self) -> None:
        next_report = self.started + PROGRESS_EVERY_S
        while self.running():
            # Short naps, so the run ends on time when the server dies mid-interval.
            await asyncio.sleep(1.0)
            if time.monotonic() < next_report and self.running():
                continue
            next_report += PROGRESS_EVERY_S
            outcomes = Counter(r.outcome for r in self.results)
            tokens = sum(r.completion_tokens for r in self.results)
            rss = f"{self.rss[-1].rss_bytes / 2**20:.1f} MiB" if self.rss else "-"
            progress(
                f"{self.elapsed():5.0f}/{self.config.duration_s:.0f} s  requests {len(self.results)}"
                f"  ok {outcomes['ok']}  stuck {outcomes['stuck']}"
                f"  errors {len(self.results) - outcomes['ok'] - outcomes['stuck']}"
                f"  in flight {self.in_flight}  {tokens / max(self.elapsed(), 1e-9):.1f} tok/s"
                f"  rss {rss}"
            )


async def _drive(config: SoakConfig, server: PredictorProcess) -> SoakRun:
    run = SoakRun()
    run.metrics_before = await asyncio.to_thread(scrape, server.url)
    load_at_start = os.getloadavg()[0]
    # Connect fast; a read may wait behind the whole queue, so the per-request
    # deadline in stream_chat bounds it, and httpx's own read timeout sits just
    # past that deadline so that a stuck request is always reported as stuck.
    timeout = httpx.Timeout(config.request_timeout_s + 5.0, connect=10.0)
    limits = httpx.Limits(max_connections=config.concurrency + 2)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        load = _Load(config, server)
        await asyncio.gather(
            load.sampler(),
            load.reporter(),
            *(load.worker(client) for _ in range(config.concurrency)),
        )
    run.load_s = load.elapsed()
    run.loadavg = (load_at_start, os.getloadavg()[0])
    run.results, run.rss = load.results, load.rss
    # The last requests end after the sampler stops, so look again.
    run.server_exit = load.server_exit if load.server_exit is not None else server.process.poll()
    if run.server_exit is None:
        try:
            run.metrics_after, run.idle_wait_s = await wait_idle(server.url, IDLE_TIMEOUT_S)
        except httpx.HTTPError as exc:
            progress(f"/metrics after the run failed: {exc}")
        with contextlib.suppress(OSError):
            run.idle_rss = sample_process_tree(server.process.pid, load.elapsed())
    return run


def run_soak(config: SoakConfig) -> SoakRun:
    """Start the server, load it, and stop it on the way out, whatever happens."""
    args = ["--model", str(config.model), "--model_name", SERVED_NAME]
    with PredictorProcess(args, name="kzero-soak") as server:
        server.wait_ready(SERVED_NAME, READY_TIMEOUT_S)
        progress(f"server ready (pid {server.process.pid}); {config.concurrency} streams")
        return asyncio.run(_drive(config, server))
