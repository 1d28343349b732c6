"""Replay a request trace through the KPA, the activator and llama.cpp-like pods.

A discrete-event simulation: arrivals, pods becoming ready, requests finishing,
and an autoscaler tick every ``tick_s``. What it models:

- concurrency: requests arrived and not finished (in pods or buffered in the
  activator), averaged into 1-second buckets as Knative's queue-proxy and
  activator report it, then over the stable and panic windows;
- the activator: a request that finds no ready pod waits in the activator; one
  that finds no pod at all pokes the autoscaler, which scales from zero at once
  rather than on the next tick;
- pods: ready ``cold_start_s`` after they are created; each decodes up to
  ``parallel`` requests together (kzero's continuous batching) and queues the
  rest in arrival order. The requests in a pod share its throughput, which
  depends on how many decode together (``PodModel.aggregate_tokens_per_s``,
  from a benchmark's concurrency levels): a processor-sharing queue. A
  prompt costs ``prompt_tokens / prefill_tokens_per_s`` seconds of the pod
  alone, and so a proportional share when others run. A pod scaled away
  stops taking requests and goes once it drains;
- billing: a pod costs from creation (cold start included) to removal.
"""

from __future__ import annotations

import heapq
import itertools
import math
import statistics
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from autoscaling.kpa import KpaConfig, KpaDecider, ScaleToZeroGate, apply_bounds
from autoscaling.traces import TraceRequest

# Floating-point slack when deciding that a job's work is done.
_WORK_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PodModel:
    """How one pod serves.

    ``tokens_per_s`` is one request decoding alone. ``batched_tokens_per_s``
    maps a number of requests decoding together to the pod's aggregate
    tokens/s (a benchmark's concurrency levels above 1); between measured
    levels the aggregate is interpolated linearly, and beyond the highest it
    stays flat. Without it the pod still interleaves up to ``parallel``
    requests, at no gain: they share ``tokens_per_s``.
    """

    tokens_per_s: float
    cold_start_s: float
    prefill_tokens_per_s: float = 1000.0
    parallel: int = 1
    batched_tokens_per_s: Mapping[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tokens_per_s <= 0 or self.prefill_tokens_per_s <= 0 or self.cold_start_s < 0:
            raise ValueError("token rates must be positive and the cold start not negative")
        if self.parallel < 1:
            raise ValueError("a pod decodes at least one request at a time")
        if any(n < 2 or rate <= 0 for n, rate in self.batched_tokens_per_s.items()):
            raise ValueError("batched throughput needs levels of 2 or more and positive rates")

    def aggregate_tokens_per_s(self, decoding: int) -> float:
        """The pod's tokens/s with ``decoding`` (1..parallel) requests decoding together."""
        levels = sorted({1: self.tokens_per_s, **self.batched_tokens_per_s}.items())
        if decoding >= levels[-1][0]:
            return levels[-1][1]
        for (low_n, low_rate), (high_n, high_rate) in itertools.pairwise(levels):
            if low_n <= decoding <= high_n:
                return low_rate + (high_rate - low_rate) * (decoding - low_n) / (high_n - low_n)
        raise AssertionError("unreachable: decoding >= 1 lies between two levels")

    def prefill_work(self, prompt_tokens: int) -> float:
        """A prompt's cost in single-request decode tokens (the unit of a pod's work)."""
        return prompt_tokens * self.tokens_per_s / self.prefill_tokens_per_s


@dataclass
class RequestOutcome:
    arrival_s: float
    start_s: float = math.nan
    first_token_s: float = math.nan
    end_s: float = math.nan
    waited_for_cold_start: bool = False

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> float:
        return self.end_s - self.arrival_s


@dataclass(frozen=True)
class TickRecord:
    time_s: float
    pods: int
    ready_pods: int
    desired: int
    concurrency: int
    panicking: bool


@dataclass
class _Job:
    """A request decoding in a pod; work is counted in single-request decode tokens."""

    outcome: RequestOutcome
    first_token_work: float  # the prompt and the first token
    total_work: float
    done: float = 0.0


@dataclass
class _Pod:
    created_s: float
    ready_s: float
    queue: deque[tuple[RequestOutcome, TraceRequest]] = field(default_factory=deque)
    running: list[_Job] = field(default_factory=list)
    updated_s: float = 0.0  # when the running jobs' progress was last brought up to date
    version: int = 0  # bumped on every reschedule: older "done" events are stale
    removing: bool = False
    removed_s: float | None = None

    def ready(self, now: float) -> bool:
        return self.ready_s <= now

    @property
    def outstanding(self) -> int:
        return len(self.queue) + len(self.running)


@dataclass
class SimulationResult:
    duration_s: float
    ticks: list[TickRecord]
    requests: list[RequestOutcome]
    pod_seconds: float
    pods_started: int

    def percentile(self, values: Sequence[float], q: float) -> float:
        if not values:
            return math.nan
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]

    def latency(self) -> dict[str, float]:
        ttft = [r.ttft_s for r in self.requests]
        e2e = [r.e2e_s for r in self.requests]
        return {
            **{f"ttft_p{q}": self.percentile(ttft, q / 100) for q in (50, 95, 99)},
            **{f"e2e_p{q}": self.percentile(e2e, q / 100) for q in (50, 95, 99)},
            "cold_start_share": (
                sum(r.waited_for_cold_start for r in self.requests) / len(self.requests)
                if self.requests
                else 0.0
            ),
        }


class Simulation:
    """One run; call ``run`` once."""

    def __init__(
        self,
        trace: Sequence[TraceRequest],
        pod: PodModel,
        config: KpaConfig,
        *,
        duration_s: float | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> None:
        self.trace = sorted(trace, key=lambda r: r.arrival_s)
        self.pod = pod
        self.config = config
        last_arrival = self.trace[-1].arrival_s if self.trace else 0.0
        self.duration_s = duration_s if duration_s is not None else last_arrival
        self.decider = KpaDecider(config)
        self.gate = ScaleToZeroGate(config)
        self.pods: list[_Pod] = []
        self.activator: deque[tuple[RequestOutcome, TraceRequest]] = deque()
        self.outcomes: list[RequestOutcome] = []
        self.ticks: list[TickRecord] = []
        self.concurrency = 0
        self.buckets: dict[int, float] = {}
        self._last_busy_second = -math.inf
        self._last_t = 0.0
        self._events: list[tuple[float, int, str, object]] = []
        self._seq = itertools.count()
        self._progress = progress

    # Concurrency accounting, in 1-second buckets.
    def _advance(self, now: float) -> None:
        t = self._last_t
        while t < now:
            second = math.floor(t)
            step_end = min(now, second + 1.0)
            if self.concurrency:
                self.buckets[second] = self.buckets.get(second, 0.0) + self.concurrency * (
                    step_end - t
                )
                self._last_busy_second = second
            t = step_end
        self._last_t = now

    def _window_average(self, now: float, window_s: float) -> float:
        end = math.floor(now)
        start = end - math.ceil(window_s)
        return sum(self.buckets.get(s, 0.0) for s in range(start, end)) / window_s

    def _push(self, time_s: float, kind: str, payload: object = None) -> None:
        heapq.heappush(self._events, (time_s, next(self._seq), kind, payload))

    def _live(self) -> list[_Pod]:
        return [p for p in self.pods if p.removed_s is None and not p.removing]

    def _rate(self, pod: _Pod) -> float:
        """Work per second of each running job: the pod's throughput, shared equally."""
        decoding = len(pod.running)
        return self.pod.aggregate_tokens_per_s(decoding) / decoding

    def _progress_pod(self, pod: _Pod, now: float) -> None:
        """Advance the running jobs to ``now``; note first tokens crossed on the way."""
        if pod.running and now > pod.updated_s:
            rate = self._rate(pod)
            for job in pod.running:
                before = job.done
                job.done += rate * (now - pod.updated_s)
                if math.isnan(job.outcome.first_token_s) and job.done >= job.first_token_work:
                    job.outcome.first_token_s = (
                        pod.updated_s + (job.first_token_work - before) / rate
                    )
        pod.updated_s = now

    def _fill(self, pod: _Pod, now: float) -> None:
        """Start queued requests in free slots, then schedule the next completion."""
        self._progress_pod(pod, now)
        while pod.queue and len(pod.running) < self.pod.parallel:
            outcome, request = pod.queue.popleft()
            outcome.start_s = now
            prefill = self.pod.prefill_work(request.prompt_tokens)
            pod.running.append(_Job(outcome, prefill + 1, prefill + request.output_tokens))
        pod.version += 1
        if pod.running:
            rate = self._rate(pod)
            remaining = min(job.total_work - job.done for job in pod.running)
            self._push(now + max(0.0, remaining) / rate, "done", (pod, pod.version))
        elif pod.removing and pod.removed_s is None:
            pod.removed_s = now

    def _finish(self, pod: _Pod, now: float) -> int:
        """Complete the jobs whose work is done; returns how many finished."""
        self._progress_pod(pod, now)
        finished = [
            job for job in pod.running if job.done >= job.total_work * (1 - _WORK_TOLERANCE)
        ]
        for job in finished:
            if math.isnan(job.outcome.first_token_s):
                job.outcome.first_token_s = now
            job.outcome.end_s = now
            pod.running.remove(job)
        self.concurrency -= len(finished)
        self._fill(pod, now)
        return len(finished)

    def _route(self, item: tuple[RequestOutcome, TraceRequest], now: float) -> bool:
        ready = [p for p in self._live() if p.ready(now)]
        if not ready:
            return False
        pod = min(ready, key=lambda p: p.outstanding)
        pod.queue.append(item)
        self._fill(pod, now)
        return True

    def _scale_to(self, desired: int, now: float) -> None:
        live = self._live()
        for _ in range(desired - len(live)):
            pod = _Pod(created_s=now, ready_s=now + self.pod.cold_start_s)
            self.pods.append(pod)
            self._push(pod.ready_s, "ready", pod)
        if desired < len(live):
            # Not-ready pods go first, then the least loaded.
            victims = sorted(live, key=lambda p: (p.ready(now), p.outstanding))
            for pod in victims[: len(live) - desired]:
                pod.removing = True
                self._fill(pod, now)
                if pod.removed_s is None and not pod.ready(now):
                    pod.removed_s = now

    def _window_empty(self, now: float) -> bool:
        """Nothing in flight and no concurrency in the stable window: both averages are 0."""
        if self.concurrency:
            return False
        return self._last_busy_second < math.floor(now) - math.ceil(self.config.stable_window_s)

    def _tick(self, now: float) -> None:
        if self._window_empty(now):
            # Skips the window sums on the long idle stretches of sparse traces.
            stable = panic = 0.0
        else:
            stable = self._window_average(now, self.config.stable_window_s)
            panic = self._window_average(now, self.config.panic_window_s)
        ready = sum(p.ready(now) for p in self._live())
        decision = self.decider.decide(now, ready, stable, panic)
        desired = self.gate.apply(now, apply_bounds(self.config, decision.desired))
        if decision.desired == 0 and self.concurrency:
            desired = max(desired, 1)
        self._scale_to(desired, now)
        self.ticks.append(
            TickRecord(now, len(self._live()), ready, desired, self.concurrency, decision.panicking)
        )

    def run(self) -> SimulationResult:
        for request in self.trace:
            self._push(request.arrival_s, "arrival", request)
        if self.config.min_scale:
            self.gate.activate(0.0)
            self._scale_to(self.config.min_scale, 0.0)
        self._push(self.config.tick_s, "tick")
        pending = len(self.trace)
        while self._events:
            now, _, kind, payload = heapq.heappop(self._events)
            if kind == "tick" and now > self.duration_s and pending == 0 and not self._live():
                break
            self._advance(now)
            if kind == "arrival":
                assert isinstance(payload, TraceRequest)
                self._arrive(payload, now)
            elif kind == "ready":
                while self.activator and self._route(self.activator.popleft(), now):
                    pass
            elif kind == "done":
                assert isinstance(payload, tuple)
                pod, version = payload
                if version == pod.version:
                    pending -= self._finish(pod, now)
            elif kind == "tick":
                self._tick(now)
                if self._progress:
                    self._progress(now)
                if now > self.duration_s and pending == 0 and self.config.min_scale > 0:
                    break
                self._push(now + self.config.tick_s, "tick")
        end = max(self.duration_s, self._last_t)
        pod_seconds = sum(
            (p.removed_s if p.removed_s is not None else end) - p.created_s for p in self.pods
        )
        return SimulationResult(end, self.ticks, self.outcomes, pod_seconds, len(self.pods))

    def _arrive(self, request: TraceRequest, now: float) -> None:
        outcome = RequestOutcome(arrival_s=now)
        self.outcomes.append(outcome)
        self.concurrency += 1
        item = (outcome, request)
        if self._route(item, now):
            return
        outcome.waited_for_cold_start = True
        self.activator.append(item)
        self.gate.activate(now)
        if not self._live():
            # The activator pokes the autoscaler: scale from zero now, not at the next tick.
            self._scale_to(
                apply_bounds(
                    self.config, max(1, math.ceil(len(self.activator) / self.config.target_value))
                ),
                now,
            )


def simulate(
    trace: Sequence[TraceRequest],
    pod: PodModel,
    config: KpaConfig,
    *,
    duration_s: float | None = None,
    progress: Callable[[float], None] | None = None,
) -> SimulationResult:
    return Simulation(trace, pod, config, duration_s=duration_s, progress=progress).run()
