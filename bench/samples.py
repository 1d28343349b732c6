"""What one measurement holds: per request and per batch of concurrent requests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestSample:
    """One request of a batch.

    ``ttft_s`` counts from the moment the whole batch was sent, so it includes
    any time the request waited behind others (in a server's queue, or behind
    the previous request in-process). None when no text ever arrived.
    """

    ttft_s: float | None
    tokens: int
    text_chunks: int
    completed: bool
    error: str | None = None
    # Seconds between consecutive text events of this request: its inter-token
    # latencies when every event carries one token (tokens == text_chunks).
    gaps_s: tuple[float, ...] = ()


@dataclass(frozen=True)
class BatchSample:
    """``concurrency`` requests sent at once to one setup, and how long they all took."""

    setup: str
    concurrency: int
    round_index: int
    wall_s: float
    requests: tuple[RequestSample, ...]

    @property
    def tokens(self) -> int:
        return sum(request.tokens for request in self.requests)

    @property
    def tokens_per_s(self) -> float:
        """Aggregate throughput: every generated token of the batch over its wall time."""
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def completed(self) -> int:
        return sum(request.completed for request in self.requests)
