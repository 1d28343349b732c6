"""``kzero bench coldstart``: process start -> ready -> first token, kzero in cache states,
and side by side with llama.cpp's ``llama-server``.

Each round starts ``kzero serve`` once per state, interleaved:

- **miss**: an empty cache; the model comes from an HTTP origin on loopback;
- **hit**: the model is in the cache but evicted from the page cache
  (``posix_fadvise(DONTNEED)``), so it is read from the disk;
- **hot**: the model is in the cache and in the page cache;
- **local**: the GGUF file served in place (no cache), as ``--vs_llama_server``
  compares it.

With ``--vs_llama_server``, each ``local`` start is followed at once by a start
of llama-server on the same file, so that the rounds alternate kzero,
llama-server, kzero...: drift on a shared machine moves both. Both servers get
the same configuration, kzero's defaults on this machine made explicit (threads
from the CPU quota, the per-sequence context, the sequences decoded together,
the batch): llama.cpp's context set-up (allocating and clearing the KV cache)
is a large part of a start, and a comparison with a smaller cache on one side
would measure the cache, not the server. Ready means ``/v2/models/<name>/ready``
(KServe's model readiness) for kzero and ``/health`` for llama-server, both
answering 200; the report gives medians and their ratio, never one start.

Every kzero run's phases come from the predictor's own ``kzero_cold_start_seconds``
(process_start = interpreter start and imports, cache, download, verify, load,
warm_up, ready). The load runs on a thread of its own while the server is
imported, so the phases overlap and do not add up to ready. The disk's
sequential read bandwidth is measured in the same run on the same file, so the
hit figures can be compared with what the disk allows. Only the model file is
evicted: the interpreter and libraries stay in the page cache, as on a node
that has run the image before.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import httpx

from bench.arguments import add_model_argument
from bench.facts import machine_facts
from bench.harness.metrics import Samples, scrape
from bench.harness.process import (
    PredictorProcess,
    ServerProcess,
    free_port,
    http_server_on_loopback,
)
from bench.llama_server import (
    LlamaServerMissing,
    add_llama_server_arguments,
    cached_binary,
    installed_version,
    llama_server_command,
    llama_server_version,
    locate_llama_server,
)
from bench.workload import Workload
from predictor.backends.gguf_metadata import GGUFError, read_gguf_metadata
from predictor.backends.llamacpp import default_parallel, resolve_context_length
from predictor.cache.files import CHUNK_BYTES
from predictor.cache.store import ModelCache
from predictor.cache.uri import parse_model_uri
from predictor.cli_parsing import CommandError, positive_int, set_run
from predictor.cpu_quota import usable_cpu_count
from predictor.default_model import DefaultModelMissing, default_model_path
from predictor.settings import Settings

STATES = ("miss", "hit", "hot", "local")
DEFAULT_STATES = ("miss", "hit", "hot")
KZERO = "kzero"
LLAMA_SERVER = "llama-server"
SERVED_NAME = "coldstart"
# Readiness polls: one plain HTTP/1.1 request each, a few hundred microseconds of
# CPU, so that the poller takes little from the two servers' start on 2 cores.
READY_POLL_S = 0.005
READY_TIMEOUT_S = 600.0
PHASES = ("process_start", "cache", "download", "verify", "load", "warm_up", "ready")


@dataclass
class ColdStart:
    """One start of a server, timed from just before the process was spawned."""

    state: str
    ready_s: float
    first_token_s: float
    phases: dict[str, float] = field(default_factory=dict)
    server: str = KZERO


@dataclass(frozen=True)
class EngineConfig:
    """What both servers are told to allocate, so their starts do the same llama.cpp work."""

    n_threads: int
    n_ctx: int  # per sequence
    n_parallel: int
    n_batch: int

    def kzero_args(self) -> list[str]:
        return [
            "--n_threads", str(self.n_threads),
            "--n_ctx", str(self.n_ctx),
            "--n_batch", str(self.n_batch),
            "--max_running_requests", str(self.n_parallel),
        ]  # fmt: skip

    def workload(self, model: Path) -> Workload:
        # One request of one token: the start is what is measured, not the decode.
        return Workload(
            model_path=model,
            n_threads=self.n_threads,
            n_ctx=self.n_ctx,
            n_batch=self.n_batch,
            max_tokens=1,
            rounds=1,
            concurrency=(1,),
            n_parallel=self.n_parallel,
        )


DESCRIPTION = (
    "Time kzero serve from process start to ready and to the first token, with the model "
    "missing from the cache, on disk, in the page cache, or served in place; with "
    "--vs_llama_server, also llama.cpp's llama-server on the same file, interleaved. "
    "Prints medians, the phases, load and disk bandwidth, and the ratios to the targets."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    set_run(parser, run)
    add_model_argument(parser)
    parser.add_argument(
        "--runs", type=positive_int, default=5, help="Rounds: starts per state. Default: 5."
    )
    parser.add_argument(
        "--states",
        default=",".join(DEFAULT_STATES),
        help=f"Comma-separated kzero states per round, among {','.join(STATES)}. "
        f"Default: {','.join(DEFAULT_STATES)}.",
    )
    parser.add_argument(
        "--vs_llama_server",
        action="store_true",
        help="After each 'local' start of kzero (added to --states if missing), start "
        "llama-server on the same file with the same configuration; report both and the ratio.",
    )
    add_llama_server_arguments(parser, "--vs_llama_server")
    parser.add_argument(
        "--n_ctx",
        type=positive_int,
        default=None,
        help="Context per sequence for both servers. Default: kzero's (the model's, at most 4096).",
    )
    parser.add_argument(
        "--parallel",
        type=positive_int,
        default=None,
        help="Sequences decoded together (kzero --max_running_requests, llama-server "
        "--parallel). Default: kzero's for this machine's CPU quota and the model.",
    )
    parser.add_argument("--json", type=Path, default=None, help="Also write every run here.")


def run(args: argparse.Namespace) -> int:
    try:
        model = args.model or default_model_path()
        states = _states(args.states, args.vs_llama_server)
        config = engine_config(model, args.n_ctx, args.parallel)
        llama_server = _llama_server(args) if args.vs_llama_server else None
    except (DefaultModelMissing, LlamaServerMissing, GGUFError, OSError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    except RuntimeError as exc:  # the llama-server build failed
        raise CommandError(str(exc), status=1) from None
    runs, disk_reads = measure(model, args.runs, states, config, llama_server)
    report = summarize(runs, disk_reads, model.stat().st_size)
    report["config"] = asdict(config)
    if llama_server is not None:
        report["llama_server_version"] = llama_server_version(llama_server)
    print(format_report(report, model, config))
    if args.json is not None:
        payload = {
            "command": args.command_line,
            "facts": machine_facts(),
            "runs": [asdict(run) for run in runs],
            "disk_read_s": disk_reads,
            "summary": report,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def _llama_server(args: argparse.Namespace) -> Path:
    """The binary to compare with: ``--llama_server``, the cached build, or a new build."""
    if args.llama_server is None and not args.build_llama_server:
        cached = cached_binary(installed_version())
        if not cached.is_file():
            raise LlamaServerMissing(
                f"no llama-server build at {cached}. Build it once (about 10 minutes on 2 "
                "cores): 'kzero bench build-llama-server', or pass --build_llama_server; "
                "or leave out --vs_llama_server"
            )
    return locate_llama_server(
        args.llama_server, args.build_llama_server, usable_cpu_count(), _progress
    )


def _progress(message: str) -> None:
    print(f"[coldstart] {message}", file=sys.stderr, flush=True)


def _states(text: str, vs_llama_server: bool) -> tuple[str, ...]:
    states = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in states if name not in STATES]
    if unknown or not states:
        raise ValueError(f"--states: expected some of {','.join(STATES)}, got '{text}'")
    if vs_llama_server and "local" not in states:
        states += ("local",)
    return states


def engine_config(model: Path, n_ctx: int | None, parallel: int | None) -> EngineConfig:
    """kzero's defaults on this machine for this model (LlamaCppBackend's own rules),
    unless given."""
    metadata = read_gguf_metadata(model)
    threads = usable_cpu_count()
    context = resolve_context_length(n_ctx, metadata.context_length)
    if parallel is None:
        parallel = default_parallel(threads, context, metadata.kv_bytes_per_token)
    return EngineConfig(threads, context, parallel, Settings().n_batch)


def measure(
    model: Path,
    runs: int,
    states: tuple[str, ...],
    config: EngineConfig,
    llama_server: Path | None,
) -> tuple[list[ColdStart], list[float]]:
    results: list[ColdStart] = []
    disk_reads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kzero-coldstart-") as scratch, _origin(model) as url:
        uri = f"{url}/{model.name}"
        warm_cache = Path(scratch) / "warm"
        if {"hit", "hot"} & set(states):
            cached_file = ModelCache(warm_cache).ensure(parse_model_uri(uri), verify=False).path
        for round_index in range(runs):
            _progress(f"round {round_index + 1}/{runs}")
            for state in states:
                if state == "miss":
                    miss_cache = Path(scratch) / f"miss-{round_index}"
                    results.append(_start_kzero("miss", [uri, "--cache_dir", str(miss_cache)]))
                elif state == "hit":
                    disk_reads.append(_timed_cold_read(cached_file))
                    _evict_from_page_cache(cached_file)
                    results.append(_start_kzero("hit", [uri, "--cache_dir", str(warm_cache)]))
                elif state == "hot":
                    _read(cached_file)
                    results.append(_start_kzero("hot", [uri, "--cache_dir", str(warm_cache)]))
                else:
                    results.append(_start_kzero("local", [str(model), *config.kzero_args()]))
                    if llama_server is not None:
                        results.append(_start_llama_server(llama_server, model, config))
    return results, disk_reads


@contextmanager
def _origin(model: Path) -> Iterator[str]:
    """The model's directory over HTTP on loopback, standing in for a model store."""

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(model.parent))
    with http_server_on_loopback(handler) as url:
        yield url


def _start_kzero(state: str, model_args: list[str]) -> ColdStart:
    args = ["--model", *model_args, "--model_name", SERVED_NAME]
    spawned = time.perf_counter()
    with PredictorProcess(args, name=f"kzero-{state}") as server:
        ready, first_token = _ready_then_first_token(
            server, spawned, f"/v2/models/{SERVED_NAME}/ready"
        )
        phases = _phases(scrape(server.url))
    return ColdStart(state, ready, first_token, phases)


def _start_llama_server(binary: Path, model: Path, config: EngineConfig) -> ColdStart:
    port = free_port()
    command = llama_server_command(binary, config.workload(model), port, SERVED_NAME)
    spawned = time.perf_counter()
    with ServerProcess(LLAMA_SERVER, command, port) as server:
        ready, first_token = _ready_then_first_token(server, spawned, "/health")
    return ColdStart("local", ready, first_token, server=LLAMA_SERVER)


def _ready_then_first_token(
    server: ServerProcess, spawned: float, ready_path: str
) -> tuple[float, float]:
    _wait_for_200(server, ready_path)
    ready = time.perf_counter() - spawned
    body = {"model": SERVED_NAME, "prompt": "Hello", "max_tokens": 1, "temperature": 0}
    httpx.post(f"{server.url}/v1/completions", json=body, timeout=120).raise_for_status()
    return ready, time.perf_counter() - spawned


def _wait_for_200(server: ServerProcess, path: str) -> None:
    """Poll ``path`` with one plain request at a time until it answers 200.

    Not httpx: a client per poll builds an SSL context, milliseconds of CPU
    taken from the servers starting on the same cores.
    """
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{server.log()[-3000:]}"
            )
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                return
        except OSError:  # not listening yet, or reset
            pass
        finally:
            connection.close()
        time.sleep(READY_POLL_S)
    raise TimeoutError(
        f"{server.name} not ready after {READY_TIMEOUT_S:g} s:\n{server.log()[-3000:]}"
    )


def _phases(samples: Samples) -> dict[str, float]:
    """Seconds per cold-start phase: each phase is observed once per process (a series
    exported at 0 before its phase ran is left out)."""
    return {
        dict(labels)["phase"]: seconds
        for (name, labels), seconds in samples.items()
        if name == "kzero_cold_start_seconds_sum"
        and samples.get(("kzero_cold_start_seconds_count", labels), 0) > 0
    }


def _evict_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _read(path: Path) -> None:
    with path.open("rb", buffering=0) as stream:
        while stream.read(CHUNK_BYTES * 4):
            pass


def _timed_cold_read(path: Path) -> float:
    _evict_from_page_cache(path)
    started = time.perf_counter()
    _read(path)
    return time.perf_counter() - started


def _row(mine: list[ColdStart], model_bytes: int) -> dict[str, float]:
    row = {
        "ready_s": statistics.median(run.ready_s for run in mine),
        "first_token_s": statistics.median(run.first_token_s for run in mine),
    }
    for phase in PHASES:
        values = [run.phases[phase] for run in mine if phase in run.phases]
        if values:
            row[phase] = statistics.median(values)
    if "load" in row:
        row["load_bandwidth_mb_s"] = model_bytes / row["load"] / 1e6
    return row


def summarize(
    runs: list[ColdStart], disk_reads: list[float], model_bytes: int
) -> dict[str, object]:
    kzero = [run for run in runs if run.server == KZERO]
    by_state = {
        state: _row([run for run in kzero if run.state == state], model_bytes)
        for state in STATES
        if any(run.state == state for run in kzero)
    }
    report: dict[str, object] = {
        "states": by_state,
        "model_bytes": model_bytes,
        "runs_per_state": len(kzero) // max(1, len(by_state)),
    }
    if disk_reads and "hit" in by_state:
        disk_read_s = statistics.median(disk_reads)
        import_s = by_state["hit"]["process_start"]
        report |= {
            "disk_read_s": disk_read_s,
            "disk_bandwidth_mb_s": model_bytes / disk_read_s / 1e6,
            # The target: a cache-hit start to ready within 2x (imports + reading the model).
            "hit_ready_over_floor": by_state["hit"]["ready_s"] / (import_s + disk_read_s),
        }
    theirs = [run for run in runs if run.server == LLAMA_SERVER]
    if theirs:
        ours = [run for run in kzero if run.state == "local"]
        llama = _row(theirs, model_bytes)
        report["vs_llama_server"] = {
            "kzero": by_state["local"],
            "llama_server": llama,
            # The target (issue 16): kzero's start to ready within 2x llama-server's.
            "ready_ratio": by_state["local"]["ready_s"] / llama["ready_s"],
            "first_token_ratio": by_state["local"]["first_token_s"] / llama["first_token_s"],
            # Round by round (each kzero start against the llama-server start after it).
            "ready_ratio_by_round": [
                mine.ready_s / other.ready_s for mine, other in zip(ours, theirs, strict=True)
            ],
        }
    return report


def format_report(report: dict[str, object], model: Path, config: EngineConfig) -> str:
    states = report["states"]
    assert isinstance(states, dict)
    columns = ("ready_s", "first_token_s", *PHASES[:-1], "load_bandwidth_mb_s")
    widths = [max(10, len(name) + 2) for name in columns]
    header = f"{'state':6}" + "".join(
        f"{name:>{w}}" for name, w in zip(columns, widths, strict=True)
    )
    lines = [
        f"kzero bench coldstart: {model.name} ({report['model_bytes']} bytes), "
        f"medians of {report['runs_per_state']} starts per state",
        "",
        header,
    ]
    for state, row in states.items():
        cells = "".join(
            f"{row[name]:>{w}.3f}" if name in row else f"{'-':>{w}}"
            for name, w in zip(columns, widths, strict=True)
        )
        lines.append(f"{state:6}{cells}")
    lines.append("")
    if "disk_read_s" in report:
        lines += [
            f"disk sequential read of the model (page cache dropped): "
            f"{report['disk_read_s']:.3f} s, {report['disk_bandwidth_mb_s']:.0f} MB/s",
            f"cache-hit ready / (imports + disk read): {report['hit_ready_over_floor']:.2f} "
            "(target <= 2)",
        ]
    versus = report.get("vs_llama_server")
    if isinstance(versus, dict):
        by_round = versus["ready_ratio_by_round"]
        lines += [
            "",
            f"start to ready, side by side (interleaved, medians of {len(by_round)} starts each; "
            f"both: {config.n_threads} threads, {config.n_parallel} sequences of "
            f"{config.n_ctx} tokens, batch {config.n_batch}):",
            f"{'':14}{'ready_s':>10}{'first_token_s':>15}",
            f"{'kzero':14}{versus['kzero']['ready_s']:>10.3f}"
            f"{versus['kzero']['first_token_s']:>15.3f}",
            f"{'llama-server':14}{versus['llama_server']['ready_s']:>10.3f}"
            f"{versus['llama_server']['first_token_s']:>15.3f}",
            f"kzero / llama-server: ready {versus['ready_ratio']:.2f} (target <= 2; round by "
            f"round {min(by_round):.2f} to {max(by_round):.2f}), first token "
            f"{versus['first_token_ratio']:.2f}",
            f"llama-server: {report.get('llama_server_version', '')}",
            "note: ready = /v2/models/<name>/ready for kzero, /health for llama-server, "
            "answering 200",
        ]
    lines += [
        "note: seconds from just before the process is spawned; phases from kzero_cold_start_seconds",
        "note: process_start = interpreter start and imports; load = engine and weights (mmap), "
        "on a thread of its own during the imports, so phases overlap",
        "note: load bandwidth = model bytes / load seconds; a load far slower than the disk "
        "is engine set-up (context and KV cache allocation), not reading",
    ]
    return "\n".join(lines)
