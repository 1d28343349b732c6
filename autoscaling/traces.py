"""Request traces to replay through the simulator: Poisson, bursty on/off, diurnal.

Every generator is seeded, so a trace (and a report built on it) is reproducible.
Prompt and output lengths are drawn uniformly from the given ranges.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class TraceRequest:
    arrival_s: float
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Lengths:
    prompt: tuple[int, int] = (50, 200)
    output: tuple[int, int] = (500, 500)

    def draw(self, rng: random.Random) -> tuple[int, int]:
        return rng.randint(*self.prompt), rng.randint(*self.output)


def _check(duration_s: float, *rates: float) -> None:
    if duration_s <= 0:
        raise ValueError("duration must be positive")
    if any(rate < 0 for rate in rates):
        raise ValueError("rates must not be negative")


def _thinned(
    rate_at: Callable[[float], float],
    peak_rps: float,
    duration_s: float,
    lengths: Lengths,
    seed: int,
) -> list[TraceRequest]:
    """A non-homogeneous Poisson process by thinning (Lewis and Shedler)."""
    rng = random.Random(seed)
    trace: list[TraceRequest] = []
    if peak_rps <= 0:
        return trace
    now = 0.0
    while True:
        now += rng.expovariate(peak_rps)
        if now >= duration_s:
            return trace
        if rng.random() * peak_rps <= rate_at(now):
            trace.append(TraceRequest(now, *lengths.draw(rng)))


def poisson(
    rate_rps: float, duration_s: float, *, lengths: Lengths = Lengths(), seed: int = 0
) -> list[TraceRequest]:
    _check(duration_s, rate_rps)
    return _thinned(lambda _: rate_rps, rate_rps, duration_s, lengths, seed)


def bursty(
    on_rps: float,
    on_s: float,
    off_s: float,
    duration_s: float,
    *,
    lengths: Lengths = Lengths(),
    seed: int = 0,
) -> list[TraceRequest]:
    """Poisson at ``on_rps`` for ``on_s``, then silence for ``off_s``, repeated."""
    _check(duration_s, on_rps)
    if on_s <= 0 or off_s < 0:
        raise ValueError("on_s must be positive and off_s not negative")
    period = on_s + off_s
    return _thinned(
        lambda t: on_rps if t % period < on_s else 0.0, on_rps, duration_s, lengths, seed
    )


def diurnal(
    mean_rps: float,
    duration_s: float,
    *,
    period_s: float = 86400.0,
    amplitude: float = 0.9,
    lengths: Lengths = Lengths(),
    seed: int = 0,
) -> list[TraceRequest]:
    """Rate mean x (1 - amplitude x cos(2 pi t / period)): lowest at t = 0, peak at half period."""
    _check(duration_s, mean_rps)
    if not 0 <= amplitude <= 1:
        raise ValueError("amplitude must be in [0, 1]")
    peak = mean_rps * (1 + amplitude)
    return _thinned(
        lambda t: mean_rps * (1 - amplitude * math.cos(2 * math.pi * t / period_s)),
        peak,
        duration_s,
        lengths,
        seed,
    )
