"""``kzero bench soak``: many concurrent streams for a long time, on loopback.

It starts ``kzero serve`` as a child process and keeps ``--concurrency``
streaming chat completions in flight for ``--duration`` seconds, each with its
own deadline. It passes when:

- **errors**: no request failed (HTTP status, in-band SSE error, a stream that
  ended without ``data: [DONE]`` or without a ``finish_reason``, transport
  errors, malformed events);
- **stuck**: no request ran past ``--request-timeout``;
- **rss_growth**: the server's resident memory (VmRSS, children included) grew
  less than 5% from the median of the first samples after ``--warmup`` to the
  median of the last samples, so a slow leak shows while allocator noise and
  one-off growth during warm-up do not;
- **gauges**: once the clients have stopped, ``kzero_requests_running`` and
  ``kzero_requests_waiting`` are back to 0;
- **counters**: ``kzero_requests_total`` and the token counters moved by
  exactly what the client saw;
- **server_alive**: the server did not exit during the run.

The summary is printed; ``--json`` also writes every RSS sample and request
tally. The exit status is 1 when a criterion fails, naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from predictor.argtypes import positive_float, positive_int
from predictor.bench.facts import machine_facts
from predictor.bench.servers import ServerProcess, free_port, predictor_env, sigterm_as_exit
from predictor.default_model import DefaultModelMissing, default_model_path

SERVED_NAME = "kzero-soak"
# The bound: resident memory may grow less than this after warm-up.
RSS_GROWTH_LIMIT = 0.05
# Baseline and final RSS are medians over this much time (or a third of the
# post-warm-up samples on short runs), so one allocator spike decides nothing.
RSS_WINDOW_S = 60.0
PROGRESS_EVERY_S = 30.0
# After the clients stop, the server gets this long to bring its gauges to 0.
IDLE_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 300.0

# Varied on purpose: short and long questions, a system prompt or not, one
# multi-turn conversation, so prompt lengths, chat-template paths and answer
# lengths (with sampling on) all differ from request to request.
CONVERSATIONS: tuple[tuple[dict[str, str], ...], ...] = (
    ({"role": "user", "content": "Write a short poem about the sea."},),
    ({"role": "user", "content": "Explain how a bicycle stays upright, step by step."},),
    (
        {"role": "system", "content": "You are a concise assistant. Answer in one paragraph."},
        {"role": "user", "content": "What is the difference between weather and climate?"},
    ),
    ({"role": "user", "content": "List five fruits and one fact about each."},),
    (
        {"role": "user", "content": "My name is Ada. What is a good name for a cat?"},
        {"role": "assistant", "content": "How about Pixel? It suits a curious cat."},
        {"role": "user", "content": "Give me three more ideas, and say why for each."},
    ),
    ({"role": "user", "content": "Hi!"},),
    (
        {"role": "system", "content": "You are a patient teacher for children."},
        {"role": "user", "content": "Why is the sky blue? Tell it as a story about light."},
    ),
    (
        {
            "role": "user",
            "content": "Translate 'good morning, how are you?' into French and Spanish.",
        },
    ),
    ({"role": "user", "content": "Describe a busy market in a small town on a Saturday morning."},),
    ({"role": "user", "content": "What are three tips for writing clear emails at work?"},),
)


@dataclass
class RequestResult:
    """One streamed chat completion as the client saw it."""

    # "ok", "stuck", or an error kind: http_<status>, sse_error, missing_done,
    # missing_finish_reason, transport_<ExceptionName>, malformed_event.
    outcome: str
    latency_s: float
    ttft_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    detail: str = ""


@dataclass
class RssSample:
    """The server process tree's memory and handles at one moment of the run."""

    t_s: float
    rss_bytes: int
    threads: int
    open_fds: int


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
    metrics_before: dict[str, float] = field(default_factory=dict)
    metrics_after: dict[str, float] = field(default_factory=dict)
    idle_wait_s: float = 0.0
    server_exit: int | None = None
    # 1-minute load averages when the load started and ended: on a shared
    # machine, another process's llama.cpp explains a slow or "stuck" run.
    loadavg: tuple[float, float] = (0.0, 0.0)


# ---- the server process tree's memory, from /proc ----


def _status_fields(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``, found by each process's PPid (works on any kernel)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # The command name may hold spaces and parentheses; fields resume after the last ')'.
        after_name = stat.rpartition(")")[2].split()
        if len(after_name) > 1 and int(after_name[1]) == pid:
            found.append(int(entry.name))
    return found


def process_tree(pid: int) -> list[int]:
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(_children(current))
    return tree


def sample_process_tree(pid: int, t_s: float) -> RssSample:
    """VmRSS, threads and open descriptors summed over ``pid`` and its descendants.

    Threads and descriptors are not criteria; a steady climb in either is the
    first sign of a leaked worker or socket, so they are kept next to RSS.
    """
    rss_kb = threads = fds = 0
    for member in process_tree(pid):
        try:
            fields = _status_fields(member)
            fds += len(os.listdir(f"/proc/{member}/fd"))
        except OSError:
            if member == pid:
                raise
            continue  # a child that exited between the scan and the read
        rss_kb += int(fields.get("VmRSS", "0 kB").split()[0])
        threads += int(fields.get("Threads", "0"))
    return RssSample(round(t_s, 3), rss_kb * 1024, threads, fds)


def rss_window(count_after_warmup: int, sample_every_s: float) -> int:
    """Samples per median window: RSS_WINDOW_S worth, but at most a third of the run."""
    return max(1, min(round(RSS_WINDOW_S / sample_every_s), count_after_warmup // 3))


def rss_growth(
    samples: Sequence[RssSample], warmup_s: float, sample_every_s: float
) -> dict[str, Any]:
    """(median of the last window - median of the first window after warm-up) / first."""
    after = [s for s in samples if s.t_s >= warmup_s]
    if len(after) < 2:
        return {"growth": None, "samples_after_warmup": len(after)}
    window = rss_window(len(after), sample_every_s)
    baseline = statistics.median(s.rss_bytes for s in after[:window])
    final = statistics.median(s.rss_bytes for s in after[-window:])
    return {
        "growth": (final - baseline) / baseline,
        "baseline_bytes": baseline,
        "final_bytes": final,
        "peak_bytes": max(s.rss_bytes for s in samples),
        "window_samples": window,
        "samples_after_warmup": len(after),
    }


# ---- the client: one streamed chat completion ----


def _request_body(index: int, max_tokens: int) -> dict[str, Any]:
    return {
        "model": SERVED_NAME,
        "messages": list(CONVERSATIONS[index % len(CONVERSATIONS)]),
        "max_tokens": max_tokens,
        # Sampling with a per-request seed: answers (and so lengths) vary like
        # real traffic, yet a run can be replayed request by request.
        "temperature": 0.8,
        "seed": index,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def stream_chat(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], deadline_s: float
) -> RequestResult:
    """Send one request and read its SSE to the end, or give up at ``deadline_s`` ("stuck").

    Giving up closes the connection, which the server must see as a client that
    went away: it aborts the generation and counts the request as "aborted".
    """
    started = time.perf_counter()
    ttft: float | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    error: tuple[str, str] | None = None
    done = False
    content_chunks = 0
    try:
        async with (
            asyncio.timeout(deadline_s),
            client.stream("POST", url, json=body) as response,
        ):
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                error = (f"http_{response.status_code}", text[:200])
            else:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[len("data:") :].strip()
                    if payload == "[DONE]":
                        done = True
                        break
                    event = json.loads(payload)
                    if "error" in event:
                        # Keep reading: the server still owes us [DONE] after an error event.
                        error = error or ("sse_error", str(event["error"])[:200])
                        continue
                    if event.get("usage"):
                        usage = event["usage"]
                    for choice in event.get("choices") or []:
                        if choice["delta"].get("content"):
                            content_chunks += 1
                            if ttft is None:
                                ttft = time.perf_counter() - started
                        if choice.get("finish_reason") is not None:
                            finish_reason = choice["finish_reason"]
    except TimeoutError:
        # Whether it was still queued or stalled mid-answer tells a slow queue
        # on a busy machine from a hung generation.
        progress = (
            f"{content_chunks} content chunks, the first after {ttft:.1f} s"
            if ttft is not None
            else "no content yet (queued?)"
        )
        return RequestResult(
            "stuck", time.perf_counter() - started, ttft, detail=f"past its deadline; {progress}"
        )
    except httpx.HTTPError as exc:
        error = error or (f"transport_{type(exc).__name__}", str(exc)[:200])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        error = error or ("malformed_event", f"{type(exc).__name__}: {exc}"[:200])
    latency = time.perf_counter() - started
    if error is None and not done:
        error = ("missing_done", "the stream ended without data: [DONE]")
    if error is None and finish_reason is None:
        error = ("missing_finish_reason", "no chunk carried a finish_reason")
    if error is None and usage is None:
        error = ("missing_usage", "include_usage was asked for but no usage chunk came")
    if error is not None:
        return RequestResult(error[0], latency, ttft, detail=error[1])
    assert usage is not None
    return RequestResult(
        "ok", latency, ttft, int(usage["prompt_tokens"]), int(usage["completion_tokens"])
    )


# ---- /metrics ----


def scrape(base_url: str) -> dict[str, float]:
    """The kzero request series, summed over labels: name -> value (status kept apart)."""
    totals: dict[str, float] = {}
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("kzero_"):
            continue
        for sample in family.samples:
            key = sample.name
            if sample.name == "kzero_requests_total":
                key = f"kzero_requests_total{{status={sample.labels['status']}}}"
            totals[key] = totals.get(key, 0.0) + sample.value
    return totals


GAUGES = ("kzero_requests_running", "kzero_requests_waiting")


async def wait_idle(base_url: str, timeout_s: float) -> tuple[dict[str, float], float]:
    """Scrape until both request gauges read 0, or ``timeout_s`` passes; the last scrape."""
    started = time.monotonic()
    while True:
        metrics = await asyncio.to_thread(scrape, base_url)
        waited = time.monotonic() - started
        if all(metrics.get(name, 0.0) == 0 for name in GAUGES) or waited >= timeout_s:
            return metrics, waited
        await asyncio.sleep(0.5)


# ---- the run ----


def _progress(message: str) -> None:
    print(f"[kzero soak] {message}", file=sys.stderr, flush=True)


class _Load:
    """The shared state of the client workers, the sampler and the progress reporter."""

    def __init__(self, config: SoakConfig, server: ServerProcess) -> None:
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
                body = _request_body(index, self.config.max_tokens)
                result = await stream_chat(client, self.url, body, self.config.request_timeout_s)
            finally:
                self.in_flight -= 1
            self.results.append(result)
            if result.outcome != "ok":
                _progress(f"request {index}: {result.outcome} {result.detail}")

    async def sampler(self) -> None:
        pid = self.server.process.pid
        while self.running():
            exit_code = self.server.process.poll()
            if exit_code is not None:
                self.server_exit = exit_code
                _progress(f"the server exited with {exit_code}; stopping the run")
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
            _progress(
                f"{self.elapsed():5.0f}/{self.config.duration_s:.0f} s  requests {len(self.results)}"
                f"  ok {outcomes['ok']}  stuck {outcomes['stuck']}"
                f"  errors {len(self.results) - outcomes['ok'] - outcomes['stuck']}"
                f"  in flight {self.in_flight}  {tokens / max(self.elapsed(), 1e-9):.1f} tok/s"
                f"  rss {rss}"
            )


async def _drive(config: SoakConfig, server: ServerProcess) -> SoakRun:
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
            _progress(f"/metrics after the run failed: {exc}")
        with contextlib.suppress(OSError):
            run.idle_rss = sample_process_tree(server.process.pid, load.elapsed())
    return run


def run_soak(config: SoakConfig) -> SoakRun:
    """Start the server, load it, and stop it on the way out, whatever happens."""
    command = [
        sys.executable, "-m", "predictor",
        "--model", str(config.model),
        "--model_name", SERVED_NAME,
        "--http_port", str(port := free_port()),
    ]  # fmt: skip
    server = ServerProcess("kzero", command, port, f"/v1/models/{SERVED_NAME}", predictor_env())
    try:
        server.wait_ready(time.monotonic() + READY_TIMEOUT_S)
        _progress(f"server ready (pid {server.process.pid}); {config.concurrency} streams")
        return asyncio.run(_drive(config, server))
    finally:
        server.stop()


# ---- judging and reporting ----


def _percentiles(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    return {"p50": rank(0.5), "p95": rank(0.95), "p99": rank(0.99), "max": ordered[-1]}


def _delta(run: SoakRun, name: str) -> float:
    return run.metrics_after.get(name, 0.0) - run.metrics_before.get(name, 0.0)


def judge(config: SoakConfig, run: SoakRun) -> dict[str, Any]:
    """The summary: figures and one pass/fail line per criterion."""
    outcomes = Counter(r.outcome for r in run.results)
    ok = [r for r in run.results if r.outcome == "ok"]
    errors = {kind: n for kind, n in outcomes.items() if kind not in ("ok", "stuck")}
    memory = rss_growth(run.rss, config.warmup_s, config.sample_every_s)
    tokens = sum(r.completion_tokens for r in ok)
    after = [s for s in run.rss if s.t_s >= config.warmup_s]

    # Every status the server reports, not a fixed list: a status added later
    # (a timeout, a shed request) must still be accounted for.
    prefix = "kzero_requests_total{status="
    statuses = {
        k[len(prefix) : -1]
        for k in (*run.metrics_before, *run.metrics_after)
        if k.startswith(prefix)
    }
    server_requests = {s: _delta(run, f"{prefix}{s}}}") for s in sorted(statuses | {"ok"})}
    counters = {
        "server_requests": server_requests,
        "server_generation_tokens": _delta(run, "kzero_generation_tokens_total"),
        "server_prompt_tokens": _delta(run, "kzero_prompt_tokens_total"),
        "client_requests": len(run.results),
        "client_ok": len(ok),
        "client_completion_tokens": tokens,
        "client_prompt_tokens": sum(r.prompt_tokens for r in ok),
    }
    mismatches = []
    if server_requests["ok"] != len(ok):
        mismatches.append(f"server ok {server_requests['ok']:.0f} != client ok {len(ok)}")
    if sum(server_requests.values()) != len(run.results):
        mismatches.append(
            f"server requests {sum(server_requests.values()):.0f} != client {len(run.results)}"
        )
    # Only when every request completed can the client's usage explain every token.
    if len(ok) == len(run.results):
        for kind, client_key in (
            ("generation", "client_completion_tokens"),
            ("prompt", "client_prompt_tokens"),
        ):
            server_tokens, client_tokens = counters[f"server_{kind}_tokens"], counters[client_key]
            if server_tokens != client_tokens:
                mismatches.append(
                    f"server {kind} tokens {server_tokens:.0f} != client {client_tokens}"
                )
    gauges = {name: run.metrics_after.get(name) for name in GAUGES}

    growth = memory["growth"]
    criteria = {
        "server_alive": (run.server_exit is None, f"exit code {run.server_exit}"),
        "errors": (not errors, ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "0"),
        "stuck": (
            outcomes["stuck"] == 0,
            f"{outcomes['stuck']} past {config.request_timeout_s:g} s",
        ),
        "rss_growth": (
            growth is not None and growth < RSS_GROWTH_LIMIT,
            "too few samples after warm-up" if growth is None else f"{growth:+.2%} (limit +5%)",
        ),
        "gauges": (
            all(value == 0 for value in gauges.values()),
            ", ".join(f"{k} {v}" for k, v in gauges.items())
            + f" after waiting {run.idle_wait_s:.1f} s",
        ),
        "counters": (not mismatches and run.metrics_after != {}, "; ".join(mismatches) or "match"),
    }
    return {
        "passed": all(passed for passed, _ in criteria.values()),
        "failed": [name for name, (passed, _) in criteria.items() if not passed],
        "criteria": {
            name: {"passed": passed, "detail": detail}
            for name, (passed, detail) in criteria.items()
        },
        "requests": {
            "total": len(run.results),
            "ok": len(ok),
            "stuck": outcomes["stuck"],
            "errors": errors,
        },
        "load_s": run.load_s,
        "loadavg_start_end": list(run.loadavg),
        "completion_tokens": tokens,
        "tokens_per_s": tokens / run.load_s if run.load_s else 0.0,
        "requests_per_s": len(ok) / run.load_s if run.load_s else 0.0,
        "latency_s": _percentiles([r.latency_s for r in ok]),
        "ttft_s": _percentiles([r.ttft_s for r in ok if r.ttft_s is not None]),
        "rss": {
            **memory,
            "first_bytes": run.rss[0].rss_bytes if run.rss else None,
            "idle_bytes": run.idle_rss.rss_bytes if run.idle_rss else None,
            # After warm-up, when every connection and worker thread should exist already.
            "threads_first_last": [after[0].threads, after[-1].threads] if after else None,
            "open_fds_first_last": [after[0].open_fds, after[-1].open_fds] if after else None,
        },
        "gauges": gauges,
        "counters": counters,
    }


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def _ms(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "-"
    return "  ".join(f"{k} {v * 1000:.0f} ms" for k, v in stats.items())


def format_summary(config: SoakConfig, summary: dict[str, Any], facts: dict[str, Any]) -> str:
    rss = summary["rss"]
    requests = summary["requests"]
    lines = [
        f"kzero bench soak  {facts['date_utc']}",
        f"machine: nproc {facts['nproc']}, usable CPUs {facts['usable_cpus']}, {facts['cpu_model']}",
        f"model: {config.model.name}  concurrency {config.concurrency}  duration {config.duration_s:g} s"
        f"  warm-up {config.warmup_s:g} s  max_tokens {config.max_tokens}"
        f"  request deadline {config.request_timeout_s:g} s",
        "",
        f"requests: {requests['total']} in {summary['load_s']:.1f} s, ok {requests['ok']}, "
        f"stuck {requests['stuck']}, errors {sum(requests['errors'].values())}",
        f"throughput: {summary['requests_per_s']:.2f} req/s, {summary['tokens_per_s']:.1f} tok/s "
        f"({summary['completion_tokens']} tokens)",
        f"latency: {_ms(summary['latency_s'])}",
        f"TTFT:    {_ms(summary['ttft_s'])}",
        f"RSS: first {_mib(rss.get('first_bytes'))}, baseline {_mib(rss.get('baseline_bytes'))}, "
        f"final {_mib(rss.get('final_bytes'))}, peak {_mib(rss.get('peak_bytes'))}, "
        f"idle after {_mib(rss.get('idle_bytes'))} (medians of {rss.get('window_samples', '-')} "
        f"samples every {config.sample_every_s:g} s)",
        f"machine load average (1 min) at start/end: {summary['loadavg_start_end'][0]:.2f}"
        f" / {summary['loadavg_start_end'][1]:.2f}",
        f"after warm-up, threads first/last {rss['threads_first_last']}, open fds first/last "
        f"{rss['open_fds_first_last']}",
        "",
    ]
    for name, verdict in summary["criteria"].items():
        lines.append(f"{'PASS' if verdict['passed'] else 'FAIL'}  {name:12} {verdict['detail']}")
    if summary["failed"]:
        lines.append(f"\nsoak FAILED: {', '.join(summary['failed'])}")
    else:
        lines.append("\nsoak passed")
    return "\n".join(lines)


# ---- arguments ----


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kzero bench soak",
        description="Start kzero serve on loopback and keep N streaming chat completions in "
        "flight for a while. Fails (exit 1) on any error or stuck request, resident memory "
        "growing 5% or more after warm-up, request gauges not back to 0, or counters that "
        "disagree with the client.",
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="GGUF file. Default: the bundled SmolLM2."
    )
    parser.add_argument(
        "--duration", type=positive_float, default=600.0, help="Seconds of load. Default: 600."
    )
    parser.add_argument(
        "--concurrency", type=positive_int, default=8, help="Streams in flight. Default: 8."
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=60.0,
        help="Seconds of load before the RSS baseline is taken. Default: 60.",
    )
    parser.add_argument(
        "--max-tokens", type=positive_int, default=64, help="max_tokens per request. Default: 64."
    )
    parser.add_argument(
        "--request-timeout",
        type=positive_float,
        default=60.0,
        help="A request still running after this many seconds counts as stuck. Default: 60.",
    )
    parser.add_argument(
        "--sample-every",
        type=positive_float,
        default=5.0,
        help="Seconds between RSS samples. Default: 5.",
    )
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    return parser


def soak_main(argv: Sequence[str]) -> int:
    """Entry point of ``kzero bench soak``; returns the process exit status."""
    args = build_parser().parse_args(list(argv))
    if not 0 <= args.warmup < args.duration:
        print("kzero bench soak: --warmup must be at least 0 and below --duration", file=sys.stderr)
        return 2
    try:
        model = args.model if args.model is not None else default_model_path()
    except DefaultModelMissing as exc:
        print(f"kzero bench soak: {exc}", file=sys.stderr)
        return 2
    if not model.is_file():
        print(f"kzero bench soak: model file not found: {model}", file=sys.stderr)
        return 2
    config = SoakConfig(
        model=model,
        duration_s=args.duration,
        concurrency=args.concurrency,
        warmup_s=args.warmup,
        max_tokens=args.max_tokens,
        request_timeout_s=args.request_timeout,
        sample_every_s=args.sample_every,
    )
    facts = machine_facts()
    try:
        with sigterm_as_exit():
            run = run_soak(config)
    except (RuntimeError, TimeoutError) as exc:
        print(f"kzero bench soak: {exc}", file=sys.stderr)
        return 1
    summary = judge(config, run)
    print(format_summary(config, summary, facts), flush=True)
    if args.json is not None:
        payload = {
            "command": ["kzero", "bench", "soak", *argv],
            "facts": facts,
            "config": {**asdict(config), "model": str(config.model)},
            "summary": summary,
            "rss_samples": [asdict(sample) for sample in run.rss],
            "failures": [asdict(r) for r in run.results if r.outcome != "ok"],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if summary["passed"] else 1
