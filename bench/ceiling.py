"""The physical ceiling of decoding on this machine, measured in the same run.

Decoding one step reads every weight once, whatever the number of sequences in
the batch (one step yields up to one token per sequence). So a step can go no
faster than ``weight bytes / memory bandwidth``, and a setup's share of that
ceiling is ``steps/s x bytes per step / bandwidth``.

- Bandwidth: a STREAM-like copy, ``dst[:] = src``, split across ``threads``
  threads (numpy releases the GIL while it copies), counting the bytes read
  plus the bytes written; best of several repeats: the machine can do at least
  that. As STREAM asks, each array is at least 4 times the last-level cache,
  so the figure is DRAM bandwidth. A second copy with arrays the size of the
  weights shows what a step could get when the weights stay in cache (a small
  model can fit in a large L3), so DRAM is not always the binding ceiling.
- Bytes per step: the GGUF's tensor data. The token-embedding matrix counts in
  full only when it doubles as the output projection (tied embeddings, as in
  SmolLM2); otherwise a step reads just one row of it per token.
- Steps/s: for a setup that batches, at concurrency N a step yields at most N
  tokens (at most its parallel sequences P when P < N), so ``tokens/s / N`` is
  a lower bound on its steps/s (prefill steps and the tail of a batch, when
  fewer sequences are left, yield fewer). A setup that runs requests one at a
  time makes one token per step.
- The KV cache read per step (``kv_bytes_per_token`` x tokens in context) is
  left out and reported separately: a few percent of SmolLM2's weights at one
  short stream, about a sixth at 8 streams of ~80 tokens, so the shares of
  batched steps are underestimates.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from predictor.backends.gguf_metadata import GGUFMetadata, read_gguf_metadata

TOKEN_EMBEDDING = "token_embd.weight"
OUTPUT_PROJECTION = "output.weight"
# The smallest STREAM array; larger when 4x the last-level cache asks for more.
MIN_ARRAY_MIB = 256
DEFAULT_REPEATS = 7
CPU_CACHES = Path("/sys/devices/system/cpu/cpu0/cache")
_SIZE_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30}


@dataclass(frozen=True)
class Bandwidth:
    """Copy bandwidth in bytes/s (read + write), over ``repeats`` timed copies."""

    label: str
    threads: int
    array_bytes: int
    best: float
    median: float
    samples: tuple[float, ...]


@dataclass(frozen=True)
class StepBytes:
    """Bytes one decode step reads from the weights, and what the KV cache adds per token."""

    weights: int
    tensor_data: int
    token_embedding_counted: bool
    kv_per_token: int | None


@dataclass(frozen=True)
class CeilingRow:
    setup: str
    concurrency: int
    tokens_per_s: float
    tokens_per_step: int
    steps_per_s: float
    # steps/s x bytes per step / bandwidth: the share of the DRAM copy bandwidth used.
    fraction_of_bandwidth: float
    # The same against the copy bandwidth at the weights' size, when measured.
    fraction_of_cached_bandwidth: float | None = None


def copy_rate(nbytes: int, seconds: float) -> float:
    """STREAM's copy convention: every byte is read once and written once."""
    return 2 * nbytes / seconds


def parse_cache_size(text: str) -> int:
    """A sysfs cache size ("307200K", "2048K", "32M") in bytes."""
    text = text.strip()
    if text and text[-1] in _SIZE_UNITS:
        return int(text[:-1]) * _SIZE_UNITS[text[-1]]
    return int(text)


def last_level_cache_bytes(caches: Path = CPU_CACHES) -> int | None:
    """The largest-level data or unified cache CPU 0 sees, from sysfs; None if unknown."""
    found: tuple[int, int] | None = None
    for index in sorted(caches.glob("index*")):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            level = int((index / "level").read_text())
            size = parse_cache_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if found is None or level > found[0]:
            found = (level, size)
    return found[1] if found else None


def stream_array_mib(llc_bytes: int | None) -> int:
    """STREAM's rule: each array at least 4x the last-level cache (and never tiny)."""
    if llc_bytes is None:
        return MIN_ARRAY_MIB
    return max(MIN_ARRAY_MIB, -(-4 * llc_bytes // 2**20))


def measure_copy_bandwidth(
    threads: int, array_mib: int, repeats: int = DEFAULT_REPEATS, label: str = "copy"
) -> Bandwidth:
    import numpy as np

    count = array_mib * 2**20 // 8
    src = np.ones(count, dtype=np.float64)  # ones and zeros: every page really mapped
    dst = np.zeros(count, dtype=np.float64)
    bounds = [count * i // threads for i in range(threads + 1)]
    slices = [slice(lo, hi) for lo, hi in itertools.pairwise(bounds)]

    def copy(part: slice) -> None:
        np.copyto(dst[part], src[part])

    rates = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(copy, slices))  # warm-up: faults in dst, starts the threads
        for _ in range(repeats):
            started = time.perf_counter()
            list(pool.map(copy, slices))
            rates.append(copy_rate(src.nbytes, time.perf_counter() - started))
    return Bandwidth(
        label=label,
        threads=threads,
        array_bytes=int(src.nbytes),
        best=max(rates),
        median=statistics.median(rates),
        samples=tuple(rates),
    )


def step_bytes(metadata: GGUFMetadata) -> StepBytes:
    names = {tensor.name for tensor in metadata.tensors}
    tied = OUTPUT_PROJECTION not in names
    total = sum(tensor.nbytes for tensor in metadata.tensors)
    weights = sum(
        tensor.nbytes for tensor in metadata.tensors if tied or tensor.name != TOKEN_EMBEDDING
    )
    return StepBytes(
        weights=weights,
        tensor_data=total,
        token_embedding_counted=tied and TOKEN_EMBEDDING in names,
        kv_per_token=metadata.kv_bytes_per_token,
    )


def model_step_bytes(model: Path) -> StepBytes:
    return step_bytes(read_gguf_metadata(model))


def ceiling_rows(
    tokens_per_s: Mapping[tuple[str, int], float],
    batching_setups: Sequence[str],
    bytes_per_step: int,
    bandwidth: float,
    cached_bandwidth: float | None = None,
    sequences: Mapping[str, int] | None = None,
) -> list[CeilingRow]:
    """One row per (setup, concurrency) measured; a setup not in ``batching_setups``
    decodes one token per step at any concurrency, and one in ``sequences`` at most
    that many (its parallel sequences; the other requests wait)."""
    rows = []
    limits = sequences or {}
    for (setup, concurrency), rate in sorted(tokens_per_s.items()):
        per_step = concurrency if setup in batching_setups else 1
        per_step = min(per_step, limits.get(setup, per_step))
        steps = rate / per_step
        rows.append(
            CeilingRow(
                setup=setup,
                concurrency=concurrency,
                tokens_per_s=rate,
                tokens_per_step=per_step,
                steps_per_s=steps,
                fraction_of_bandwidth=steps * bytes_per_step / bandwidth,
                fraction_of_cached_bandwidth=(
                    steps * bytes_per_step / cached_bandwidth if cached_bandwidth else None
                ),
            )
        )
    return rows


def single_stream_ceiling(bytes_per_step: int, bandwidth: float) -> float:
    """Tokens/s one sequence could reach if a step cost only its weight reads."""
    return bandwidth / bytes_per_step


def format_ceiling(
    dram: Sequence[Bandwidth],
    cached: Bandwidth | None,
    step: StepBytes,
    rows: Sequence[CeilingRow],
    names: Mapping[str, str],
) -> str:
    best = max(dram, key=lambda b: b.best)
    lines = [
        f"ceiling: DRAM copy bandwidth (STREAM-like, read + write, {best.threads} threads, "
        f"2 x {best.array_bytes / 2**20:.0f} MiB arrays, best of {len(best.samples)}): "
        + ", ".join(
            f"{b.label} {b.best / 1e9:.2f} GB/s (median {b.median / 1e9:.2f})" for b in dram
        )
        + f"; used: {best.best / 1e9:.2f} GB/s",
    ]
    if cached is not None:
        lines.append(
            f"ceiling: copy bandwidth with weight-sized arrays (2 x {cached.array_bytes / 2**20:.0f}"
            f" MiB): {cached.best / 1e9:.2f} GB/s (median {cached.median / 1e9:.2f})"
        )
    lines += [
        f"ceiling: bytes read per decode step: {step.weights / 1e6:.1f} MB of weights "
        f"(tensor data {step.tensor_data / 1e6:.1f} MB; token embedding "
        f"{'counted: tied to the output' if step.token_embedding_counted else 'one row per token'})"
        + (
            f"; KV cache adds {step.kv_per_token / 1e3:.1f} kB per token in context"
            if step.kv_per_token
            else ""
        ),
        f"ceiling: single stream at most {single_stream_ceiling(step.weights, best.best):.0f} tok/s"
        " from DRAM"
        + (
            f", {single_stream_ceiling(step.weights, cached.best):.0f} tok/s at the weight-sized copy"
            if cached is not None
            else ""
        ),
    ]
    for row in rows:
        cached_share = (
            ""
            if row.fraction_of_cached_bandwidth is None
            else f", {row.fraction_of_cached_bandwidth:.1%} of the weight-sized copy"
        )
        lines.append(
            f"ceiling {names[row.setup]} concurrency {row.concurrency}: {row.tokens_per_s:.1f} tok/s"
            f" / {row.tokens_per_step} per step = {row.steps_per_s:.1f} steps/s"
            f" -> {row.fraction_of_bandwidth:.1%} of the DRAM copy bandwidth{cached_share}"
        )
    return "\n".join(lines)
